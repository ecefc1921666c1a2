#!/usr/bin/env python3
"""Turn an exit trace (``pyhv -d exits -D trace.log``, or the monitor's ``trace exits
on``) into a PNG of the exit rate per exit reason over time: the picture of a boot, with
its I/O exits, EPT violations and interrupts. Needs matplotlib (``pip install
'pyhv[tools]'``).

    python tools/plot_exits.py trace.log exits.png [--bin 0.01] [--top 8]
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter, defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from devicemodel.exit_trace import parse_line  # noqa: E402


def exit_rates(lines, bin_seconds: float, top: int):
    """(bin start times, {reason: exits per second in each bin}) for the ``top`` most
    frequent reasons; the rest are summed as "other"."""
    records = [r for r in map(parse_line, lines) if r is not None]
    if not records:
        return [], {}
    totals = Counter(r.reason for r in records)
    keep = {reason for reason, _ in totals.most_common(top)}
    bins = int(max(r.time for r in records) / bin_seconds) + 1
    counts = defaultdict(lambda: [0] * bins)
    for r in records:
        counts[r.reason if r.reason in keep else "other"][int(r.time / bin_seconds)] += 1
    times = [i * bin_seconds for i in range(bins)]
    return times, {reason: [c / bin_seconds for c in series] for reason, series in counts.items()}


def plot(trace: Path, out: Path, bin_seconds: float, top: int) -> int:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    with open(trace, errors="replace") as f:
        times, rates = exit_rates(f, bin_seconds, top)
    if not times:
        print(f"plot_exits: no exit trace lines in {trace}", file=sys.stderr)
        return 1
    fig, ax = plt.subplots(figsize=(11, 5))
    for reason, series in sorted(rates.items(), key=lambda item: -sum(item[1])):
        ax.plot(times, series, label=reason, linewidth=1.2)
    ax.set_yscale("symlog", linthresh=10)
    ax.set_xlabel("time since tracing started (s)")
    ax.set_ylabel(f"exits per second ({bin_seconds * 1000:g} ms bins)")
    ax.set_title(f"VM exits by reason: {trace.name}")
    ax.legend(fontsize="small", loc="upper right")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("trace", type=Path)
    parser.add_argument("png", type=Path)
    parser.add_argument("--bin", type=float, default=0.01, help="bin width in seconds")
    parser.add_argument("--top", type=int, default=8, help="reasons drawn on their own")
    args = parser.parse_args(argv)
    return plot(args.trace, args.png, args.bin, args.top)


if __name__ == "__main__":
    sys.exit(main())
