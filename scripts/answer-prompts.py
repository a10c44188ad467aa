#!/usr/bin/env python3
"""answer-prompts.py ANSWER... -- COMMAND...: runs COMMAND on a pseudo-terminal, as at a
console, and types each ANSWER when a prompt (output ending in ": ") appears; the answer
is shown as *** since prompts for secrets do not echo. Exits with COMMAND's status.
Used by the demo so that prompts and messages appear in the order a person sees them
(pam_misc discards input typed before its prompt, so answers cannot be sent ahead)."""
import os, pty, sys

split = sys.argv.index("--")
answers, command = sys.argv[1:split], sys.argv[split + 1:]
pid, fd = pty.fork()
if pid == 0:
    os.execvp(command[0], command)
pending = b""
while True:
    try:
        data = os.read(fd, 4096)
    except OSError:
        break
    if not data:
        break
    sys.stdout.write(data.decode("utf-8", "replace").replace("\r\n", "\n"))
    sys.stdout.flush()
    pending = (pending + data)[-256:]
    if pending.rstrip(b" ").endswith(b":") and pending.endswith(b" "):
        pending = b""
        answer = answers.pop(0) if answers else ""
        sys.stdout.write("***" if answer else "")
        sys.stdout.flush()
        os.write(fd, answer.encode() + b"\n")
_, status = os.waitpid(pid, 0)
sys.exit(os.waitstatus_to_exitcode(status))
