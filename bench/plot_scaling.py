#!/usr/bin/env python3
"""Plots bench/scaling.sh's CSV: samples/s and efficiency against ranks, weak and strong."""
import csv
import subprocess
import sys

try:
    import matplotlib
except ImportError:  # PyPI is reachable where the benchmarks run; install on first use
    subprocess.check_call([sys.executable, "-m", "pip", "install", "--quiet", "matplotlib"])
    import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402


def main(csv_path: str, png_path: str, title: str) -> None:
    rows = list(csv.DictReader(open(csv_path)))
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    for mode, style in (("weak", "o-"), ("strong", "s--")):
        sel = [r for r in rows if r["mode"] == mode]
        ranks = [int(r["ranks"]) for r in sel]
        ax1.plot(ranks, [float(r["samples_per_s"]) for r in sel], style, label=mode)
        ax2.plot(ranks, [float(r["efficiency"]) for r in sel], style, label=mode)
    ax1.set_xlabel("ranks")
    ax1.set_ylabel("samples/s (all ranks)")
    ax2.set_xlabel("ranks")
    ax2.set_ylabel("efficiency vs ideal")
    ax2.axhline(1.0, color="grey", linewidth=0.5)
    for ax in (ax1, ax2):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(png_path, dpi=100)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else "lockstep scaling")
