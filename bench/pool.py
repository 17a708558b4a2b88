"""Pool the download runs of several bench results: one median per client and torrent, and the ratios.

Usage: bench/pool.py bench/results/bench-A.json bench/results/bench-B.json ...

One run of 8 repeats cannot tell ±10 % apart on a noisy VM; the downloads of several runs of the
same code, pooled, can. Runs of different torrent sizes are pooled apart.
"""
import json
import statistics
import sys

MiB = 1024 * 1024


def pooled_speeds(paths):
    """{(client key, "torrent, size"): [MiB/s, ...]} over every file's download runs."""
    speeds = {}
    for path in paths:
        with open(path) as f:
            result = json.load(f)
        size = result["args"]["size_mib"]
        for key, runs in result.get("throughput", {}).items():
            client, label = key.split(" / ")
            speeds.setdefault((client, f"{label}, {size} MiB"), []).extend(size / s for s in runs["seconds"])
    return speeds


def main(paths):
    speeds = pooled_speeds(paths)
    labels = sorted({label for _, label in speeds})
    clients = sorted({client for client, _ in speeds})
    for label in labels:
        medians = {c: statistics.median(speeds[(c, label)]) for c in clients if speeds.get((c, label))}
        for client, value in sorted(medians.items(), key=lambda pair: -pair[1]):
            print(f"{label}: {client}: {value:.0f} MiB/s (median of {len(speeds[(client, label)])})")
        app = medians.get("app")
        others = {c: v for c, v in medians.items() if c != "app"}
        if app:
            ratios = ", ".join(f"{c} {app / v:.2f}" for c, v in others.items())
            print(f"{label}: app / each: {ratios}")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__.strip())
    main(sys.argv[1:])
