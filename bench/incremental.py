"""Full against incremental reads of the job list, with many jobs (issue #23, item 2).

Starts `python app.py` on loopback (HASHDROP_MAX_ACTIVE at its default), submits --jobs magnets
of made-up hashes in batches of --batch through the API, waits until the server is quiet, then
times GET /api/jobs (every job) and GET /api/jobs?since=<token> (what changed since the last
answer), and the page's poll: GET /jobs (the whole table) and GET /jobs?since=&rows= (its changed
rows). Prints p50/p99 in ms and the bytes of each answer.

    set -a; . /work/shared/loopback.env; set +a
    .venv/bin/python bench/incremental.py --jobs 10000
"""
import argparse
import html
import json
import re
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent / "tests"))  # swarm.py: the tests' loopback environment
sys.path.insert(0, str(BENCH))

from app_server import AppServer, proc_status, wait_quiet  # noqa: E402

POLL = re.compile(r'<div id="jobs-poll"[^>]*hx-get="([^"]+)"')


def percentile(samples, p):
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def timed(server, path, rounds, next_path=None):
    """Seconds for each of rounds GETs of path (or of what next_path(answer) says to ask next),
    and the size of the last answer."""
    seconds, size = [], 0
    for _ in range(rounds):
        started = time.perf_counter()
        status, _, body = server.request("GET", path)
        seconds.append(time.perf_counter() - started)
        if status != 200:
            raise RuntimeError(f"GET {path} answered {status}")
        size = len(body)
        if next_path is not None:
            path = next_path(body)
    return seconds, size


def row(name, seconds, size):
    ms = [s * 1000 for s in seconds]
    return (f"| {name} | {percentile(ms, 50):.1f} | {percentile(ms, 99):.1f} | {statistics.mean(ms):.1f} "
            f"| {size:,} |")


def since_next(body):
    return f"/api/jobs?since={json.loads(body)['token']}"


def poll_next(body):
    found = POLL.search(body.decode())
    return html.unescape(found.group(1)) if found else "/jobs"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=100)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="hashdrop-incremental-") as workdir:
        server = AppServer(workdir, "http://127.0.0.1:1/announce")
        server.env["HASHDROP_TRACKERS"] = "[]"  # magnets nobody seeds: no tracker to ask
        server.start()
        try:
            for start in range(0, args.jobs, args.batch):
                count = min(args.batch, args.jobs - start)
                server.submit_api(secrets.token_hex(20) for _ in range(count))
            wait_quiet(server.pid, timeout=600)
            status = proc_status(server.pid)
            print(f"{args.jobs:,} jobs; server RSS {status['rss_mib']:.0f} MiB, {status['threads']:,} threads; "
                  f"{args.rounds} rounds each, one after another on one connection")
            print("| request | p50 ms | p99 ms | mean ms | bytes |")
            print("|---|---|---|---|---|")
            print(row("GET /api/jobs (every job)", *timed(server, "/api/jobs", args.rounds)))
            first = server.api("GET", "/api/jobs?since=")
            print(row("GET /api/jobs?since= (what changed)",
                      *timed(server, since_next(json.dumps(first).encode()), args.rounds, since_next)))
            print(row("GET /jobs (the table, 25 rows)", *timed(server, "/jobs", args.rounds)))
            _, _, page = server.request("GET", "/jobs")
            print(row("GET /jobs?since=&rows= (its changed rows)",
                      *timed(server, poll_next(page), args.rounds, poll_next)))
        finally:
            server.stop()


if __name__ == "__main__":
    main()
