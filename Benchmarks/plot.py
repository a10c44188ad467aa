"""plot.py ROWS.tsv OUT.svg — fleet-bench's figure: verdicts/s and p99 against clients.

ROWS: tab-separated `series clients verdicts_per_s latency_ms` lines (the ceiling's latency
is pgbench's mean, smartotpd's the p99). Writes an SVG by hand (no plotting library on the
machine); fleet-bench turns it into a PNG with ImageMagick when it is there.
"""
import math
import sys

rows = [line.rstrip("\n").split("\t") for line in open(sys.argv[1]) if line.strip()]
series = {}
for name, clients, rate, ms in rows:
    series.setdefault(name, []).append((int(clients), float(rate), float(ms)))
colours = ["#444444", "#1f77b4", "#d62728", "#2ca02c", "#9467bd"]
W, H, PAD, GAP = 1000, 470, 70, 60
pw = (W - 2 * PAD - GAP) / 2
ph = H - 2 * PAD
clients = sorted({c for pts in series.values() for c, _, _ in pts})


def x_of(c, left):
    # clients on a log scale: 1, 8, 64 evenly apart
    lo, hi = math.log(min(clients)), math.log(max(clients))
    return left + (0 if hi == lo else (math.log(c) - lo) / (hi - lo)) * pw


def nice_step(top):
    """A round step (1, 2, 2.5 or 5 × 10^k) that covers `top` in four."""
    raw = top / 4
    k = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1
    return next(m * k for m in (1, 2, 2.5, 5, 10) if m * k >= raw)


def panel(left, title, values, unit):
    step = nice_step(max(v for pts in values.values() for _, v in pts) or 1)
    top = step * 4
    out = [f'<rect x="{left}" y="{PAD}" width="{pw}" height="{ph}" fill="none" stroke="#999"/>',
           f'<text x="{left + pw / 2}" y="{PAD - 25}" text-anchor="middle" font-size="16">{title}</text>']
    for i in range(5):
        v = top * i / 4
        y = PAD + ph - ph * i / 4
        out.append(f'<line x1="{left}" y1="{y}" x2="{left + pw}" y2="{y}" stroke="#eee"/>')
        out.append(f'<text x="{left - 6}" y="{y + 4}" text-anchor="end" font-size="11">{v:,.{0 if step >= 1 else 1}f}{unit}</text>')
    for c in clients:
        out.append(f'<text x="{x_of(c, left)}" y="{PAD + ph + 18}" text-anchor="middle" font-size="11">{c}</text>')
    out.append(f'<text x="{left + pw / 2}" y="{PAD + ph + 38}" text-anchor="middle" font-size="12">clients</text>')
    for k, (name, pts) in enumerate(values.items()):
        pts = sorted(pts)
        path = " ".join(f"{x_of(c, left):.1f},{PAD + ph - ph * v / top:.1f}" for c, v in pts)
        colour = colours[k % len(colours)]
        out.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"/>')
        for c, v in pts:
            out.append(f'<circle cx="{x_of(c, left):.1f}" cy="{PAD + ph - ph * v / top:.1f}" r="3" fill="{colour}"/>')
    return out


rates = {n: [(c, r) for c, r, _ in pts] for n, pts in series.items()}
lat = {n: [(c, m) for c, _, m in pts] for n, pts in series.items()}
body = panel(PAD, "verdicts (transactions) per second", rates, "")
body += panel(PAD + pw + GAP, "p99 latency, ms (the ceiling: pgbench's mean)", lat, "")
for k, name in enumerate(series):
    y = H - 12
    x = PAD + k * 260
    body.append(f'<rect x="{x}" y="{y - 10}" width="14" height="4" fill="{colours[k % len(colours)]}"/>')
    body.append(f'<text x="{x + 20}" y="{y - 4}" font-size="12">{name}</text>')
svg = (f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="DejaVu Sans, sans-serif">'
       f'<rect width="{W}" height="{H}" fill="white"/>' + "".join(body) + "</svg>\n")
open(sys.argv[2], "w").write(svg)
