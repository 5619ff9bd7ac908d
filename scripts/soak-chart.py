#!/usr/bin/env python3
"""Draws the samples of `eventbus-bench soak --csv` as a PNG: the server's RSS, open descriptors
and tasks, its queue depths, and the load, over time.

    scripts/soak-chart.py SAMPLES.csv CHART.png [--title TEXT]

Needs matplotlib (`pip install matplotlib`, or Debian's python3-matplotlib).
"""

import argparse
import csv
import sys


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("samples")
    parser.add_argument("chart")
    parser.add_argument("--title", default="eventbus soak")
    args = parser.parse_args()
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print(
            "soak-chart: matplotlib is missing (pip install matplotlib, or apt-get install "
            "python3-matplotlib); no chart drawn",
            file=sys.stderr,
        )
        return 3

    with open(args.samples, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        print(f"soak-chart: {args.samples} has no samples", file=sys.stderr)
        return 1

    def column(name):
        return [float(r[name]) if r.get(name) not in (None, "") else float("nan") for r in rows]

    t = [v / 60 for v in column("t_s")]
    fig, axes = plt.subplots(4, 1, figsize=(8, 9), sharex=True)
    fig.suptitle(args.title, fontsize=11)

    ax = axes[0]
    ax.plot(t, column("rss_mib"), color="tab:blue", linewidth=1)
    ax.set_ylabel("RSS MiB")
    ax.set_ylim(bottom=0)

    ax = axes[1]
    ax.plot(t, column("fds"), label="open fds", linewidth=1)
    ax.plot(t, column("tasks"), label="runtime tasks", linewidth=1)
    ax.plot(t, column("sse_connections"), label="SSE streams", linewidth=1)
    ax.set_ylabel("count")
    ax.set_ylim(bottom=0)
    ax.legend(loc="lower right", fontsize=8, ncol=3)

    ax = axes[2]
    for name, label in [
        ("q_store_writer", "store writer"),
        ("q_subscribers", "subscribers"),
        ("q_sse", "sse"),
        ("q_webhooks", "webhooks"),
        ("q_plugin", "plugin"),
    ]:
        ax.plot(t, column(name), label=label, linewidth=1)
    ax.set_ylabel("queue depth")
    ax.set_ylim(bottom=0)
    ax.legend(loc="upper right", fontsize=8, ncol=5)

    ax = axes[3]
    ax.plot(t, column("events"), label="events/s", linewidth=0.8)
    ax.plot(t, column("stream_connects"), label="stream connects/s", linewidth=0.8)
    ax.plot(t, column("attempts_ok"), label="webhook ok/s", linewidth=0.8)
    ax.plot(t, column("attempts_failed"), label="webhook failed/s", linewidth=0.8)
    ax.set_ylabel("per second")
    ax.set_xlabel("minutes")
    ax.set_ylim(bottom=0)
    ax.legend(loc="upper right", fontsize=8, ncol=4)

    for ax in axes:
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(args.chart, dpi=72)
    print(f"chart: {args.chart}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
