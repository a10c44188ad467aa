#!/usr/bin/env python3
"""Prints every string literal with a plain interpolation ("…\\(x)…" not inside msg(…)) in
the Swift files given. The module builds messages with msg(): plain interpolation is
expanded in place in Embedded Swift and made the module a tenth larger."""
import sys


def string_end(s, i):
    """s[i] is a quote: the index after the literal, and whether it interpolates."""
    i += 1
    interpolates = False
    while i < len(s):
        if s[i] == '\\':
            if s.startswith('\\(', i):
                interpolates = True
                i = parens_end(s, i + 1)
                continue
            i += 2
            continue
        if s[i] == '"':
            return i + 1, interpolates
        i += 1
    return len(s), interpolates


def parens_end(s, i):
    depth = 0
    while i < len(s):
        if s[i] == '"':
            i, _ = string_end(s, i)
            continue
        depth += {'(': 1, ')': -1}.get(s[i], 0)
        i += 1
        if depth == 0:
            return i
    return len(s)


found = 0
for path in sys.argv[1:]:
    for number, line in enumerate(open(path, encoding='utf-8'), 1):
        if line.lstrip().startswith('//') or '"""' in line:
            continue
        i = 0
        while i < len(line):
            if line.startswith('//', i):
                break
            if line[i] == '"' and (i == 0 or line[i - 1] != '#'):
                end, interpolates = string_end(line, i)
                if interpolates and not line[:i].endswith('msg('):
                    print(f"{path}:{number}: {line.strip()}")
                    found += 1
                i = end
                continue
            i += 1
sys.exit(1 if found else 0)
