"""docs/benchmarks.svg from bench/results.json: one horizontal bar chart per benchmark, each
bar a tool's time relative to the first (ours), labelled with seconds. Plain SVG, no plotting
library (the lab has none to spare).
    python3 bench/plot.py bench/results.json docs/benchmarks.svg
results.json: {"title": ..., "charts": [{"title", "unit", "bars": [[label, value], ...]}]}
"""

import json
import sys
from html import escape

W, LABEL, BAR_H, GAP, HEAD = 760, 300, 18, 6, 34
COLORS = ["#2b6cb0", "#c05621", "#718096", "#2f855a", "#6b46c1"]


def chart(c, y):
    bars = c["bars"]
    top = max(v for _l, v in bars) or 1
    out = ['<text x="10" y="%d" font-weight="bold">%s</text>' % (y + 20, escape(c["title"]))]
    y += HEAD
    for i, (label, v) in enumerate(bars):
        w = (W - LABEL - 90) * v / top
        out.append('<text x="10" y="%d">%s</text>' % (y + 13, escape(label)))
        out.append('<rect x="%d" y="%d" width="%.1f" height="%d" fill="%s"/>'
                   % (LABEL, y, max(w, 1), BAR_H, COLORS[i % len(COLORS)]))
        shown = ("%.1f" % v).rstrip("0").rstrip(".")
        out.append('<text x="%.1f" y="%d">%s %s</text>' % (LABEL + w + 6, y + 13, shown, escape(c.get("unit", "s"))))
        y += BAR_H + GAP
    return out, y + 10


def main(src, dst):
    data = json.load(open(src))
    parts, y = [], 30
    for c in data["charts"]:
        lines, y = chart(c, y)
        parts += lines
    svg = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" '
           'font-size="12">' % (W, y + 10),
           '<rect width="100%" height="100%" fill="white"/>',
           '<text x="10" y="18" font-size="14" font-weight="bold">%s</text>' % escape(data["title"])]
    with open(dst, "w") as f:
        f.write("\n".join(svg + parts + ["</svg>"]) + "\n")


if __name__ == "__main__":
    main(*sys.argv[1:3])
