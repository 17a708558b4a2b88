"""Measure hashdrop on loopback: download speed next to other clients, submit latency, 1,000 jobs.

`bash bench/run.sh` installs what this needs and runs it; `bench/bench.py --help` lists the flags.
Everything stays on 127.0.0.0/8: opentracker on 127.0.0.1 (whitelist), one libtorrent seeder on
127.0.0.2 (tests/seeder.py), and every client on 127.0.0.1 with DHT, LSD, PEX, UPnP, NAT-PMP off.
The report is printed as Markdown and written to bench/results/.
"""
import argparse
import hashlib
import json
import math
import os
import platform
import random
import secrets
import shutil
import signal
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent / "tests"))  # swarm.py: the tests' loopback swarm
sys.path.insert(0, str(BENCH.parent))  # the app's modules

import libtorrent as lt  # noqa: E402

import clients  # noqa: E402
import library  # noqa: E402
from thread_starts import ThreadStarts  # noqa: E402
import page_cache  # noqa: E402
from app_server import AppServer, cpu_seconds, proc_status, wait_quiet  # noqa: E402
from swarm import Payload, Seeder, Tracker, check_files, make_payload, make_torrent, wait_until  # noqa: E402

MiB = 1024 * 1024
CHUNK = 16 * MiB
RESULTS = BENCH / "results"
RUNNING_JOBS = 500                          # jobs that exist while submits are timed
SUBMIT_RUNS = {1: 100, 100: 100, 1000: 5}   # hashes per submit -> timed submits (p99 of 20 was the slowest)
FLOOR_COUNTS = (100, 1000)                  # after each submit of these sizes, time its thread starts alone
SCALE_JOBS = 1000
SCALE_REAL = 5                              # of which real downloads from the seeder
SCALE_REAL_SIZE = 16 * MiB
REQUESTS = 50                               # timed GETs of each page with SCALE_JOBS jobs
SCRIPT = {"X-Hashdrop": "1"}                # the API refuses a DELETE without it (a cross-site form)
IDLE_SECONDS = 10
VERIFY_LIMIT = 10.0                         # seconds after "complete" for the files to be right
SETTLE_SECONDS = 2.0                        # from one run's cleanup to the next run's clock
CHURN_CYCLES = 12                           # rounds of jobs that come and go
CHURN_REAL = 10                             # real downloads per round, removed with their files
CHURN_REAL_SIZE = 4 * MiB
CHURN_MAGNETS = 200                         # magnets without peers per round, removed
TARGETS = {
    "vs_raw": 0.9,            # app throughput / raw tuned libtorrent, at least
    "submit_100_over_floor_ms": 10,  # p99 of a 100-hash submit, at most this above its thread starts alone
    "submit_1000_ms": 200,    # p99 of a 1,000-hash submit, below
    "rss_mib": 300,           # RSS with SCALE_JOBS jobs, below
    "api_jobs_ms": 50,        # GET /api/jobs p99 with SCALE_JOBS jobs, below
    "idle_cpu_pct": 5,        # % of one core, idle with SCALE_JOBS jobs, below
}


def note(message):
    """Progress for the person watching, on stderr (the report goes to stdout)."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def parse_args(argv=None):
    """The command line: repeats, sizes, clients, raw libtorrent variants, parts."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=8,
                        help="downloads per client and torrent (default 8: twice each order of 4 clients)")
    parser.add_argument("--size-mib", type=int, default=1024, help="size of each of the two torrents (default 1024)")
    parser.add_argument("--files", type=int, default=200, help="files in the multi-file torrent (default 200)")
    parser.add_argument("--clients", default="app,raw,aria2c,transmission,qbittorrent",
                        help="comma separated, in this order (default all)")
    parser.add_argument("--raw-variant", action="append", default=[], metavar="KEY=JSON[,KEY=JSON]",
                        help="also race a raw libtorrent client with these settings on top of the app's")
    parser.add_argument("--parts", default="throughput,latency,scale,churn,library,cluster",
                        help="which parts to run (default all)")
    parser.add_argument("--library-sizes", default="1000,10000",
                        help="jobs in the library part, comma separated (default 1000,10000)")
    parser.add_argument("--workdir", default=None, help="where payloads and downloads go (default: a temp dir)")
    return parser.parse_args(argv)


# Payloads -------------------------------------------------------------------------------

def write_payload(root, name, sizes, seed):
    """Write random files {relative path: size} under root (streamed: swarm.make_payload holds a file in memory)."""
    rng = random.Random(f"{name}:{seed}")
    hashes = {}
    for rel, size in sizes.items():
        path = Path(root) / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        with open(path, "wb") as f:
            for offset in range(0, size, CHUNK):
                data = rng.randbytes(min(CHUNK, size - offset))
                digest.update(data)
                f.write(data)
        hashes[rel] = digest.hexdigest()
    return Payload(Path(root), name, hashes, dict(sizes))


def big_torrents(root, tracker_url, size, files):
    """Two torrents of `size` bytes: one file, and `files` files in a folder."""
    single = write_payload(root, "single.bin", {"single.bin": size}, seed=0)
    share, rest = divmod(size, files)
    multi = write_payload(root, "multi", {f"multi/part{i:03d}.bin": share + (rest if i == files - 1 else 0)
                                          for i in range(files)}, seed=0)
    return {"1 file": make_torrent(single, tracker_url), f"{files} files": make_torrent(multi, tracker_url)}


def random_hashes(count):
    """Fresh v1 info hashes that no peer has."""
    return [secrets.token_hex(20) for _ in range(count)]


# Statistics -----------------------------------------------------------------------------

def percentile(samples, p):
    """Nearest-rank percentile (p99 of 100 samples is the second slowest, of 20 the slowest)."""
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def median(samples):
    """The median, or None for no samples."""
    return statistics.median(samples) if samples else None


def ratio_interval(numerator, denominator, rounds=2000):
    """95 % bootstrap interval of the speed ratio numerator / denominator, from each one's seconds per run.

    A speed is size / median seconds, so the ratio is median(denominator) / median(numerator).
    """
    rng = random.Random(0)
    ratios = sorted(
        median(rng.choices(denominator, k=len(denominator))) / median(rng.choices(numerator, k=len(numerator)))
        for _ in range(rounds))
    return ratios[int(0.025 * rounds)], ratios[int(0.975 * rounds) - 1]


# Part 1: download speed -----------------------------------------------------------------

@dataclass
class Runs:
    """What one client did with one torrent over the repeats."""

    seconds: list = field(default_factory=list)
    first_byte: list = field(default_factory=list)  # seconds from submit to the first byte on disk
    client_cpu: list = field(default_factory=list)  # % of one core during the download
    busiest_thread: list = field(default_factory=list)  # % of one core, the client's busiest thread
    seeder_cpu: list = field(default_factory=list)
    late: list = field(default_factory=list)  # seconds after "complete" until the files were right
    failures: list = field(default_factory=list)

    def speed(self, size):
        """Median MiB/s of the successful runs, or None."""
        return size / MiB / median(self.seconds) if self.seconds else None


def make_clients(args, tracker_url):
    """The clients asked for, in order; raw libtorrent variants follow the plain raw client."""
    made = []
    for key in args.clients.split(","):
        if key == "app":
            made.append(clients.App(tracker_url))
        elif key == "raw":
            made.append(clients.RawLibtorrent())
            for variant in args.raw_variant:
                made.append(clients.RawLibtorrent(dict(parse_setting(item) for item in variant.split(","))))
        elif key == "aria2c":
            made.append(clients.Aria2())
        elif key == "transmission":
            made.append(clients.Transmission())
        elif key == "qbittorrent":
            made.append(clients.QBittorrent())
        else:
            raise SystemExit(f"unknown client {key!r}")
    return made


def parse_setting(text):
    """KEY=JSON -> (key, value)."""
    key, _, value = text.partition("=")
    return key.strip(), json.loads(value)


def skip_reason(client):
    """Why a client is not raced, or None."""
    if client.version is None:
        return "not installed"
    return client.skip


def measure_throughput(args, racers, torrents, seeder, workdir):
    """Download every torrent with every client, interleaved, `repeats` times.

    On this VM a run's speed depends on what the runs before it left in memory: the VM hands freed
    memory back to the host (free page reporting), and writing into pages the host must supply
    again is slower. So every timed run follows a deleted download, and its clock starts
    SETTLE_SECONDS after that deletion: with clocks started as soon as each client was ready, raw
    libtorrent (ready 0.1 s after the deletion) beat the app (ready at 0.33 s) by 1.6x on the same
    code, and by 1.1x with both started 4 s after. An untimed first download gives the first
    timed run a deletion before it too. And each repeat races the clients in an order of
    balanced_orders(), so that no client always runs after the same other one.
    """
    runs = {(client.key, label): Runs() for client in racers for label in torrents}
    if not racers:
        return runs
    label, torrent = next(iter(torrents.items()))
    note(f"untimed first download: {racers[0].name}, {label}")
    one_download(racers[0], torrent, Runs(), seeder, workdir / "untimed", time.monotonic())
    cleaned = time.monotonic()
    orders = balanced_orders(len(racers))
    for repeat in range(args.repeats):
        order = [racers[i] for i in orders[repeat % len(orders)]]
        for label, torrent in torrents.items():
            for client in order:
                outcome = one_download(client, torrent, runs[(client.key, label)], seeder,
                                       workdir / f"{client.key}-{repeat}", cleaned + SETTLE_SECONDS)
                cleaned = time.monotonic()
                note(f"{client.name}, {label}, run {repeat + 1}/{args.repeats}: {outcome}")
    return runs


def balanced_orders(count):
    """Orders of `count` clients in which each client runs right after every other equally often.

    A Williams design: the first order is 0, 1, n-1, 2, n-2, ..., the others add 1, 2, ... to it
    (mod n), and for an odd n their reverses follow. Turning one fixed order, as the bench did,
    keeps every client after the same other one (the app always ran after qBittorrent).
    """
    first, low, high = [0], 1, count - 1
    while len(first) < count:
        first.append(low)
        low += 1
        if len(first) < count:
            first.append(high)
            high -= 1
    orders = [[(client + shift) % count for client in first] for shift in range(count)]
    return orders if count % 2 == 0 else orders + [order[::-1] for order in orders]


def one_download(client, torrent, runs, seeder, run_dir, not_before):
    """Download once into a fresh directory (the clock starts at not_before at the earliest), check the
    files, note the time, delete them; say how it went."""
    dest, scratch = run_dir / "downloads", run_dir / "client"
    scratch.mkdir(parents=True)
    seeder_before = cpu_seconds(seeder.process.pid)
    try:
        result = client.download(torrent, dest, scratch, lambda: files_right_after(torrent, dest), not_before)
        seeder_cpu = cpu_seconds(seeder.process.pid) - seeder_before  # it idles before and after
    except Exception as error:  # one client's failure is that run's result, not the bench's end
        runs.failures.append(f"{type(error).__name__}: {str(error)[:300]}")
        return f"FAILED {runs.failures[-1]}"
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
        os.sync()  # the next run starts without this one's writeback
    seconds = result.seconds
    runs.seconds.append(seconds)
    runs.first_byte.append(result.first_byte)
    runs.client_cpu.append(100 * result.cpu / seconds)
    runs.busiest_thread.append(100 * result.busiest / seconds)
    runs.seeder_cpu.append(100 * seeder_cpu / seconds)
    runs.late.append(result.late)
    late = f"; files not all on disk at complete, right ≤ {result.late:.1f} s later" if result.late else ""
    return (f"{seconds:.2f} s, {torrent.total_size / MiB / seconds:.0f} MiB/s, first byte "
            f"{result.first_byte:.2f} s, CPU client "
            f"{runs.client_cpu[-1]:.0f} % (busiest thread {runs.busiest_thread[-1]:.0f} %), "
            f"seeder {runs.seeder_cpu[-1]:.0f} %{late}")


def files_right_after(torrent, dest, limit=VERIFY_LIMIT):
    """Check the files the moment the client says complete; return how many seconds later they were right.

    0 means right at the first look. A client that says complete while its writes are still
    queued shows here; after `limit` seconds the files count as wrong.
    """
    first = looked = time.monotonic()
    while True:
        try:
            check_files(torrent, dest)
            return looked - first
        except AssertionError:
            if time.monotonic() - first > limit:
                raise
        time.sleep(0.2)  # giving the client time to write, not synchronising
        looked = time.monotonic()


# Part 2: submit latency -----------------------------------------------------------------

def measure_submit_latency(tracker_url, workdir):
    """Time POST /start-downloads of 1, 100 and 1,000 new hashes with RUNNING_JOBS jobs running.

    After each submit of 100 or 1,000 hashes, ThreadStarts times the part of it the app cannot do
    without: its thread starts, alone, in this process, under the same conditions.
    """
    server = AppServer(workdir / "latency", tracker_url).start()
    try:
        server.submit_api(random_hashes(RUNNING_JOBS))
        baseline = settle(server, None)
        server.fetch_token()
        samples, floor = {}, {count: [] for count in FLOOR_COUNTS}
        with ThreadStarts(RUNNING_JOBS) as starts:
            for count, repeats in SUBMIT_RUNS.items():
                samples[count] = []
                for _ in range(repeats):
                    hashes = random_hashes(count)
                    samples[count].append(server.submit_form(hashes))
                    remove_jobs(server, hashes, RUNNING_JOBS)
                    settle(server, baseline)
                    if count in floor:
                        floor[count].append(starts.time(count))
                note(f"submit of {count} hashes: p50 {1000 * percentile(samples[count], 50):.1f} ms, "
                     f"p99 {1000 * percentile(samples[count], 99):.1f} ms")
        for count, times in floor.items():
            note(f"{count} thread starts alone: p50 {1000 * percentile(times, 50):.1f} ms, "
                 f"p99 {1000 * percentile(times, 99):.1f} ms")
        return {"samples": samples, "threads": baseline, "floor": floor}
    finally:
        server.stop()


def settle(server, threads, timeout=60):
    """Wait until the app is back to `threads` threads (when given) and idle; return its thread count."""
    if threads is not None:
        wait_until(lambda: proc_status(server.pid)["threads"] <= threads, timeout,
                   "the removed jobs' threads did not end", interval=0.1)
    wait_quiet(server.pid, timeout=10, below=0.2)
    return proc_status(server.pid)["threads"]


def remove_jobs(server, hashes, others):
    """Check that a submit started its jobs, then remove them through the API."""
    count = len(server.jobs())
    if count != others + len(hashes):
        raise RuntimeError(f"expected {others + len(hashes)} jobs after the submit, found {count}")
    for info_hash in hashes:
        server.request("DELETE", f"/api/jobs/{info_hash}", headers=SCRIPT)


# Part 3: 1,000 jobs ---------------------------------------------------------------------

def measure_scale(tracker, seeder, workdir):
    """RSS, threads, page and API latency and idle CPU with SCALE_JOBS jobs, a few of them real."""
    server = AppServer(workdir / "scale", tracker.announce_url)
    real = seed_small(tracker, seeder, workdir / "scale-payloads")
    try:
        server.start()
        at_start = proc_status(server.pid)
        server.submit_api(random_hashes(SCALE_JOBS - len(real)))
        # The real ones once the others have settled: a job whose torrent gets its metadata
        # before its thread listens (likely while ~1,000 threads start) can miss it (see report).
        settle(server, None)
        server.submit_api([torrent.info_hash for torrent in real])
        problems = wait_for_jobs(server, real)
        settle(server, None)
        api = [server.timed("GET", "/api/jobs") for _ in range(REQUESTS)]
        page = [server.timed("GET", "/") for _ in range(REQUESTS)]
        settle(server, None)
        before = cpu_seconds(server.pid)
        time.sleep(IDLE_SECONDS)  # measuring idle CPU over a window, not synchronising
        idle = 100 * (cpu_seconds(server.pid) - before) / IDLE_SECONDS
        status = proc_status(server.pid)
        jobs = len(server.jobs())
    finally:
        server.stop()
        for torrent in real:
            seeder.remove(torrent)
    note(f"{jobs} jobs: RSS {status['rss_mib']:.0f} MiB, {status['threads']} threads, idle CPU {idle:.1f} %")
    return {"jobs": jobs, "at_start": at_start, "status": status, "api": api, "page": page, "idle_cpu": idle,
            "problems": problems}


def wait_for_jobs(server, torrents, timeout=120):
    """Wait until the app has completed these torrents' jobs and their files are right; return what is not."""
    def completed():
        return all(server.job(t.info_hash)["state"] == "completed" for t in torrents)

    try:
        wait_until(completed, timeout, "not completed", interval=0.5)
    except AssertionError:
        pass  # said below, job by job
    problems = []
    for torrent in torrents:
        job = server.job(torrent.info_hash)
        if job["state"] != "completed":
            problems.append(f"{torrent.info_hash[:8]} still {job['state']} after {timeout} s "
                            f"(progress {job['progress']}, tracker {job['tracker']!r})")
        try:
            check_files(torrent, server.env["HASHDROP_SAVE_PATH"])
        except AssertionError as error:
            problems.append(str(error))
    return problems


def seed_small(tracker, seeder, root, count=SCALE_REAL, size=SCALE_REAL_SIZE):
    """count small torrents, whitelisted and seeded, with hashes of their own."""
    torrents = []
    for number in range(count):
        payload = make_payload(root, f"real-{number}.bin", size, seed=secrets.token_hex(8))
        torrent = make_torrent(payload, tracker.announce_url)
        tracker.add(torrent)
        seeder.add(torrent)
        torrents.append(torrent)
    return torrents


# Part 4: jobs that come and go ---------------------------------------------------------

def measure_churn(tracker, seeder, workdir):
    """Rounds of jobs submitted, completed or not, and removed: what the app keeps after each round.

    A server left running for months sees many jobs come and go; whatever a removed job leaves
    behind (threads, open files, memory, resume data, rows) shows here as growth across rounds.
    """
    server = AppServer(workdir / "churn", tracker.announce_url)
    real = seed_small(tracker, seeder, workdir / "churn-payloads", CHURN_REAL, CHURN_REAL_SIZE)
    hashes = [torrent.info_hash for torrent in real]
    rounds = []
    try:
        server.start()
        settle(server, None)
        rounds.append(leftovers(server))
        for number in range(CHURN_CYCLES):
            magnets = random_hashes(CHURN_MAGNETS)
            server.submit_api(hashes + magnets)
            problems = wait_for_jobs(server, real)
            if problems:
                raise RuntimeError(f"round {number + 1}: " + "; ".join(problems))
            for info_hash in hashes + magnets:
                server.request("DELETE", f"/api/jobs/{info_hash}?delete_files=true", headers=SCRIPT)
            steady_threads(server)  # the removed jobs' threads have ended
            settle(server, None)
            rounds.append(leftovers(server))
        note(f"{CHURN_CYCLES} rounds of {CHURN_REAL + CHURN_MAGNETS} jobs: RSS {rounds[1]['rss_mib']:.0f} "
             f"-> {rounds[-1]['rss_mib']:.0f} MiB, threads {rounds[0]['threads']} -> {rounds[-1]['threads']}")
    finally:
        server.stop()
        for torrent in real:
            seeder.remove(torrent)
    return {"rounds": rounds}


def steady_threads(server, window=1.0, timeout=60):
    """The app's thread count once it has stopped falling for `window` seconds."""
    deadline = time.monotonic() + timeout
    count = proc_status(server.pid)["threads"]
    while time.monotonic() < deadline:
        time.sleep(window)  # watching the count over a window, not synchronising
        now = proc_status(server.pid)["threads"]
        if now == count:
            return count
        count = now
    raise RuntimeError(f"the app's threads kept changing for {timeout} s (last {count})")


def leftovers(server):
    """What the app holds with no job: RSS, threads, open files, jobs, resume files, downloaded files."""
    data = Path(server.env["HASHDROP_DATA_DIR"])
    saved = Path(server.env["HASHDROP_SAVE_PATH"])
    return {**proc_status(server.pid),
            "open_files": len(os.listdir(f"/proc/{server.pid}/fd")),
            "jobs": len(server.jobs()),
            "resume_files": sum(1 for path in data.rglob("*.resume")),
            "downloaded_files": sum(1 for path in saved.rglob("*") if path.is_file())}


# The report -----------------------------------------------------------------------------

def markdown_table(headers, rows):
    """A Markdown table with columns padded for reading in a terminal too."""
    cells = [headers] + [[str(cell) for cell in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["| " + " | ".join(cell.ljust(width) for cell, width in zip(row, widths)) + " |" for row in cells]
    lines.insert(1, "|" + "|".join("-" * (width + 2) for width in widths) + "|")
    return "\n".join(lines)


def fmt(value, digits=0, unit=""):
    """A number for a table cell; a dash for None."""
    return "–" if value is None else f"{value:,.{digits}f}{unit}"


def verdict(ok):
    """PASS or FAIL."""
    return "PASS" if ok else "FAIL"


def speed_cell(runs, size):
    """"median (slowest–fastest)" in MiB/s, or why there is none."""
    if not runs.seconds:
        return "failed"
    speeds = [size / MiB / seconds for seconds in runs.seconds]
    return f"{runs.speed(size):.0f} ({min(speeds):.0f}–{max(speeds):.0f})"


def report_throughput(racers, skipped, runs, torrents, repeats):
    """The speed table and the ratios; returns (text, [(target, measured, ok)])."""
    labels = list(torrents)
    rows = []
    for client in racers:
        cells = [speed_cell(runs[(client.key, label)], torrents[label].total_size) for label in labels]
        pooled = {name: median([v for label in labels for v in getattr(runs[(client.key, label)], name)])
                  for name in ("first_byte", "client_cpu", "busiest_thread", "seeder_cpu")}
        rows.append([client.name, client.version, *cells, fmt(pooled["first_byte"], 2, " s"),
                     *(fmt(pooled[name], 0, " %") for name in ("client_cpu", "busiest_thread", "seeder_cpu"))])
    for client, reason in skipped:
        rows.append([client.name, client.version or "–", *["not run"] * len(labels), "–", "–", "–", "–"])
    size = fmt(torrents[labels[0]].total_size / MiB, 0, " MiB")
    text = [f"### Download speed: MiB/s from submit to complete, {size} each, median (range) of {repeats}", "",
            markdown_table(["client", "version", *labels, "first byte", "client CPU", "busiest thread",
                            "seeder CPU"], rows),
            "", "First byte: seconds from submit until data is on disk (tracker, metadata, connecting). CPU: % of "
            "one core during the download. Both are medians over both torrents.", ""]
    for client, reason in skipped:
        text.append(f"- {client.name}: not run: {reason}.")
    targets = []
    speed = {(c.key, label): runs[(c.key, label)].speed(torrents[label].total_size) for c in racers for label in labels}
    others = [c for c in racers if c.key not in ("app",) and not c.key.startswith("raw")]
    for label in labels:
        app, raw = speed.get(("app", label)), speed.get(("raw", label))
        if app and raw:
            ratio = app / raw
            low, high = ratio_interval(runs[("app", label)].seconds, runs[("raw", label)].seconds)
            text.append(f"- {label}: app / raw tuned libtorrent = {ratio:.2f} (95 % bootstrap interval "
                        f"{low:.2f}–{high:.2f}: what these runs can tell apart)")
            targets.append((f"{label}: app ≥ {TARGETS['vs_raw']} × raw libtorrent", f"{ratio:.2f}",
                            ratio >= TARGETS["vs_raw"]))
        finished = [(speed[(c.key, label)], c) for c in others if speed.get((c.key, label))]
        if app and finished:
            best, fastest = max(finished, key=lambda pair: pair[0])
            low, high = ratio_interval(runs[("app", label)].seconds, runs[(fastest.key, label)].seconds)
            text.append(f"- {label}: app / fastest other client ({fastest.name}) = {app / best:.2f} "
                        f"(95 % bootstrap interval {low:.2f}–{high:.2f})")
            targets.append((f"{label}: app ahead of every other client", f"{app / best:.2f} × {fastest.name}",
                            app > best))
    for client in racers:
        for label in labels:
            late = [value for value in runs[(client.key, label)].late if value]
            if late:
                text.append(f"- {client.name}, {label}: in {len(late)} of {len(runs[(client.key, label)].late)} runs "
                            "its files were not all on disk when it said complete; they were at the next look "
                            f"(≤ {max(late):.1f} s later; one look hashes every file).")
    failures = [(c.name, label, f) for c in racers for label in labels for f in runs[(c.key, label)].failures]
    for name, label, failure in failures:
        text.append(f"- failed run: {name}, {label}: {failure}")
    return "\n".join(text), targets


def submit_target(count, floor):
    """The p99 a submit of count hashes must stay under (ms), and how the report words it.

    The 100-hash target is relative to what the app's fixed shape costs on the machine: the
    same run's p99 of its thread starts alone, plus submit_100_over_floor_ms.
    """
    if count == 100 and floor.get(100):
        margin = TARGETS["submit_100_over_floor_ms"]
        target = percentile(floor[100], 99) + margin
        return target, f"its thread starts alone + {margin} ms ({target:.1f} ms)"
    if count == 1000:
        return TARGETS["submit_1000_ms"], f"{TARGETS['submit_1000_ms']} ms"
    return None, None


def report_latency(latency):
    """The submit latency table; returns (text, targets)."""
    rows, targets = [], []
    floor = {count: [1000 * x for x in times] for count, times in latency["floor"].items()}
    for count, samples in latency["samples"].items():
        p50, p99 = 1000 * percentile(samples, 50), 1000 * percentile(samples, 99)
        target, wording = submit_target(count, floor)
        rows.append([f"{count:,}", len(samples), fmt(p50, 1), fmt(p99, 1), f"< {target:.1f} ms" if target else "–",
                     verdict(p99 < target) if target else "–"])
        if target:
            measured = f"{p99:.1f} ms"
            if count in floor:
                measured += f" (its {count:,} thread starts alone: {percentile(floor[count], 99):.1f} ms)"
            targets.append((f"submit {count:,} hashes, p99 < {wording}", measured, p99 < target))
    for count, times in floor.items():
        rows.append([f"{count:,}: thread starts alone", len(times), fmt(percentile(times, 50), 1),
                     fmt(percentile(times, 99), 1), "–", "–"])
    text = [f"### Submit latency: POST /start-downloads (form, answered 303) with {RUNNING_JOBS} jobs running", "",
            markdown_table(["hashes", "submits", "p50 ms", "p99 ms", "target", ""], rows), "",
            f"- Each submit's hashes are new (random, no peers); its jobs are removed again before the next, "
            f"so {RUNNING_JOBS} jobs ({latency['threads']} threads) stand at every submit.",
            f"- p99 is nearest-rank: of {SUBMIT_RUNS[100]} submits, {nth_slowest(SUBMIT_RUNS[100], 99)}.",
            f"- Each hash past the first adds {per_hash_ms(latency['samples']):.2f} ms (from the p50s of 1 and "
            "1,000 hashes). The app starts a submit's threads from the request's CPU (cpus.py), and each waits "
            "for the submit to end before it adds its torrent.",
            "- \"Thread starts alone\": after each submit of 100 or 1,000 hashes, the bench starts as many "
            f"threads the way the app does, in its own process with {RUNNING_JOBS} threads asleep, and nothing "
            "else: no HTTP, no parsing, no database. The app's fixed shape starts one thread per hash inside "
            "the request, so this is the floor under its submit latency on this machine."]
    return "\n".join(text), targets


def nth_slowest(count, p):
    """Which of `count` samples the nearest-rank percentile p is, in words: "the second slowest"."""
    rank = count - math.ceil(p / 100 * count) + 1
    return "the " + {1: "", 2: "second ", 3: "third "}.get(rank, f"{rank}th ") + "slowest"


def per_hash_ms(samples):
    """Milliseconds each extra hash adds to a submit, from the medians of the smallest and largest."""
    low, high = min(samples), max(samples)
    return 1000 * (percentile(samples[high], 50) - percentile(samples[low], 50)) / (high - low)


def report_scale(scale):
    """The 1,000-jobs table; returns (text, targets)."""
    status, start = scale["status"], scale["at_start"]
    api50, api99 = 1000 * percentile(scale["api"], 50), 1000 * percentile(scale["api"], 99)
    page50, page99 = 1000 * percentile(scale["page"], 50), 1000 * percentile(scale["page"], 99)
    targets = [
        (f"{SCALE_JOBS:,} jobs: RSS < {TARGETS['rss_mib']} MiB", f"{status['rss_mib']:.0f} MiB",
         status["rss_mib"] < TARGETS["rss_mib"]),
        (f"{SCALE_JOBS:,} jobs: GET /api/jobs p99 < {TARGETS['api_jobs_ms']} ms", f"{api99:.1f} ms",
         api99 < TARGETS["api_jobs_ms"]),
        (f"{SCALE_JOBS:,} jobs: idle CPU < {TARGETS['idle_cpu_pct']} % of a core", f"{scale['idle_cpu']:.1f} %",
         scale["idle_cpu"] < TARGETS["idle_cpu_pct"]),
    ]
    rows = [
        ["RSS (VmRSS)", f"{status['rss_mib']:.0f} MiB (peak {status['hwm_mib']:.0f}, empty app {start['rss_mib']:.0f})",
         f"< {TARGETS['rss_mib']} MiB"],
        ["threads", f"{status['threads']:,} (empty app {start['threads']})", "–"],
        [f"GET /api/jobs ({REQUESTS}×)", f"p50 {api50:.1f} ms, p99 {api99:.1f} ms", f"p99 < {TARGETS['api_jobs_ms']} ms"],
        [f"GET / ({REQUESTS}×)", f"p50 {page50:.1f} ms, p99 {page99:.1f} ms", "–"],
        [f"idle CPU ({IDLE_SECONDS} s)", f"{scale['idle_cpu']:.1f} % of one core", f"< {TARGETS['idle_cpu_pct']} %"],
    ]
    text = [f"### {scale['jobs']:,} jobs: {scale['jobs'] - SCALE_REAL} without peers, {SCALE_REAL} downloaded "
            f"({SCALE_REAL_SIZE // MiB} MiB each) and seeding", "", markdown_table(["measure", "value", "target"], rows)]
    text += [f"- Real download not right: {problem}" for problem in scale["problems"]]
    return "\n".join(text), targets


def report_churn(churn):
    """The rounds table and whether anything stayed behind; returns (text, no targets)."""
    rounds = churn["rounds"]
    jobs_per_round = CHURN_REAL + CHURN_MAGNETS
    keys = ["threads", "open_files", "jobs", "resume_files", "downloaded_files"]
    rows = [[number or "before", f"{r['rss_mib']:.1f}", *(r[key] for key in keys)] for number, r in enumerate(rounds)]
    settings = lt.default_settings()
    pool = settings["aio_threads"] + settings["hashing_threads"]  # started as first needed
    threads = [r["threads"] for r in rounds[1:]]
    threads_ok = max(threads) <= rounds[0]["threads"] + pool
    middle = len(rounds) // 2
    later = [r["rss_mib"] for r in rounds[middle:]]
    growth = rounds[-1]["rss_mib"] - rounds[middle]["rss_mib"]
    jobs_since = (len(rounds) - 1 - middle) * jobs_per_round
    changed = [key for key in keys[1:] if len({r[key] for r in rounds[1:]}) > 1]
    text = [f"### Jobs that come and go: {CHURN_CYCLES} rounds of {CHURN_REAL} downloads ({CHURN_REAL_SIZE // MiB} MiB "
            f"each) and {CHURN_MAGNETS} magnets without peers, each removed with its files", "",
            "After each round, once the removed jobs' threads have ended:", "",
            markdown_table(["round", "RSS MiB", "threads", "open files", "jobs", "resume files", "downloaded files"],
                           rows), "",
            f"- RSS in rounds {middle}–{len(rounds) - 1}: {min(later):.1f}–{max(later):.1f} MiB; from round {middle} "
            f"to the last, {growth:+.1f} MiB over {jobs_since:,} jobs.",
            f"- Threads after every round at most the empty app's {rounds[0]['threads']} and libtorrent's {pool} disk "
            f"and hashing threads, which it starts as they are first needed: {'yes' if threads_ok else 'NO'} "
            f"({min(threads)}–{max(threads)}).",
            "- Open files, jobs, resume files and downloaded files the same after every round: "
            + ("yes" if not changed else "NO: " + ", ".join(changed)) + "."]
    return "\n".join(text), []


def report_targets(targets):
    """Every target with its measure and PASS/FAIL."""
    rows = [[name, measured, verdict(ok)] for name, measured, ok in targets]
    return "### Targets\n\n" + markdown_table(["target", "measured", "result"], rows)


def page_cache_limit(speeds):
    """The page-cache probe's figures, and what they cap."""
    figures = "; ".join(f"{way} {speed:.0f}" for way, speed in speeds.items())
    return (f"- Page-cache writes (bench/page_cache.py, {page_cache.PROBE_BYTES // MiB} MiB into a new file "
            f"{SETTLE_SECONDS:.0f} s after a deletion), MiB/s: {figures}. Buffered writes to one file hold its "
            "inode lock, so a file takes new pages one thread at a time. libtorrent's pread back end (the app, "
            "raw libtorrent) writes with pwrite, so the first figure caps them on the single file, and on many "
            "files they write several files at once. The mmap back end (qBittorrent 4.5) fills one file's "
            "pages from several threads at once.")


def report_limits(runs, racers, torrents, latency, scale, page_speeds=None):
    """What limits each figure, in sentences with this run's numbers."""
    cores = os.cpu_count()
    lines = ["### What limits each figure", "",
             f"- CPU: nproc = {cores}; seeder, client and test driver share them ({100 * cores} % of one core "
             "in all)."]
    if runs:
        for client in racers:
            for label in torrents:
                r = runs[(client.key, label)]
                if r.seconds and client.key in ("app", "raw"):
                    lines.append(f"- Download, {client.name}, {label}: client {median(r.client_cpu):.0f} % "
                                 f"(busiest thread {median(r.busiest_thread):.0f} %) + seeder "
                                 f"{median(r.seeder_cpu):.0f} % of one core, of {100 * cores} %.")
        lines += [
            "- Loopback: no network in the way; the kernel copies every byte between sockets, so speed is CPU "
            "(copies, SHA-1 piece checks, page-cache writes) at both ends, shared on these cores.",
            "- This VM: it hands freed memory back to the host, and writing into pages the host must "
            "supply again costs host page faults (55-70 % of a client's `perf` samples are the kernel's "
            "copy into the page cache; the page-cache line below has what that allows). How many such "
            "pages a run meets depends on the runs before it, so "
            f"every timed run follows a deleted download, its clock starts {SETTLE_SECONDS:.0f} s after "
            "that deletion, and each repeat races the clients in a balanced order (each runs right after "
            "every other equally often). Runs of one client still vary by ±30 %.",
            f"- Fixed costs in every download figure: the tracker round trip, the magnet's metadata fetch and up "
            f"to {clients.POLL * 1000:.0f} ms of polling for completion. aria2c waits about 1 s between its "
            "stages (peers, metadata, payload); qBittorrent reports completion at its next status refresh "
            "(set to 100 ms here, 1.5 s by default).",
        ]
    if page_speeds:
        lines.append(page_cache_limit(page_speeds))
    if latency:
        per_thread = percentile(latency["floor"][100], 50) * 1000 / 100
        lines.append(f"- Submit latency: a thread started per hash ({per_hash_ms(latency['samples']):.2f} ms per "
                     f"extra hash in the app; a thread start alone is {per_thread:.2f} ms here, more when it has "
                     "to wake the other CPU), one SQLite transaction with synchronous=FULL per submit (1-2 ms), "
                     "and parsing the paste. The tail is this VM's: a slow submit is slower in every part.")
    if scale:
        lines.append(f"- {SCALE_JOBS:,} jobs: each job is a thread asleep on its inbox and a torrent in the "
                     "libtorrent session; idle CPU is libtorrent's tick over those torrents, their tracker "
                     "retries and the once-a-second batched status update. GET / renders one page of 50 "
                     "rows (with their forms) in Jinja; GET /api/jobs serialises all of them to JSON.")
    return "\n".join(lines)


def header(elapsed):
    """The report's title: when, on what, with which command, how long."""
    command = " ".join(["bash bench/run.sh", *sys.argv[1:]])
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return (f"## hashdrop bench, {now}\n\n"
            f"{os.cpu_count()} CPUs (nproc), Linux {platform.release()}, Python {platform.python_version()}, "
            f"libtorrent {lt.__version__}. Loopback only: opentracker on 127.0.0.1, one libtorrent seeder on "
            f"127.0.0.2 (tests/seeder.py; it accepts TCP and uTP), every client on 127.0.0.1 with DHT, LSD, PEX, "
            f"UPnP and NAT-PMP off, dialing over TCP (over uTP only in a --raw-variant that asks for it). "
            f"`{command}` took {elapsed / 60:.1f} min.")


def write_results(text, data):
    """Keep the report and the raw numbers in bench/results/."""
    RESULTS.mkdir(exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    (RESULTS / f"bench-{stamp}.md").write_text(text + "\n")
    (RESULTS / f"bench-{stamp}.json").write_text(json.dumps(data, indent=2, default=str) + "\n")
    return RESULTS / f"bench-{stamp}.md"


# Main -----------------------------------------------------------------------------------

def stop_on_sigterm(signum, frame):
    """Turn SIGTERM into SystemExit, so that `finally` blocks stop every subprocess."""
    raise SystemExit(f"stopped by signal {signum}")


@dataclass
class Report:
    """What the parts found, for the report at the end."""

    sections: list = field(default_factory=list)
    targets: list = field(default_factory=list)
    data: dict = field(default_factory=dict)
    runs: dict = field(default_factory=dict)
    racers: list = field(default_factory=list)
    torrents: dict = field(default_factory=dict)
    latency: dict | None = None
    scale: dict | None = None
    page_speeds: dict | None = None

    def add(self, text, targets):
        """Add a part's section and its targets."""
        self.sections.append(text)
        self.targets += targets

    def text(self, elapsed):
        """The whole report in Markdown."""
        limits = report_limits(self.runs, self.racers, self.torrents, self.latency, self.scale, self.page_speeds)
        return "\n\n".join([header(elapsed), *self.sections, report_targets(self.targets), limits])


def part_throughput(report, args, tracker_url, seeder, workdir):
    """Part 1: every client downloads both torrents, interleaved."""
    every = make_clients(args, tracker_url)
    report.racers = [c for c in every if not skip_reason(c)]
    skipped = [(c, skip_reason(c)) for c in every if skip_reason(c)]
    note("timing page-cache writes (bench/page_cache.py)")
    report.page_speeds = report.data["page_cache"] = page_cache.measure(workdir / "page-cache", SETTLE_SECONDS)
    report.runs = measure_throughput(args, report.racers, report.torrents, seeder, workdir / "runs")
    report.add(*report_throughput(report.racers, skipped, report.runs, report.torrents, args.repeats))
    report.data["throughput"] = {f"{key} / {label}": vars(r) for (key, label), r in report.runs.items()}


def part_latency(report, tracker_url, workdir):
    """Part 2: submit latency with RUNNING_JOBS jobs."""
    note(f"submit latency with {RUNNING_JOBS} jobs running")
    report.latency = report.data["latency"] = measure_submit_latency(tracker_url, workdir)
    report.add(*report_latency(report.latency))


def part_scale(report, tracker, seeder, workdir):
    """Part 3: SCALE_JOBS jobs."""
    note(f"{SCALE_JOBS} jobs")
    report.scale = report.data["scale"] = measure_scale(tracker, seeder, workdir)
    report.add(*report_scale(report.scale))


def part_churn(report, tracker, seeder, workdir):
    """Part 4: jobs that come and go."""
    note(f"{CHURN_CYCLES} rounds of jobs that come and go")
    report.data["churn"] = measure_churn(tracker, seeder, workdir)
    report.add(*report_churn(report.data["churn"]))


def part_library(report, tracker, seeder, workdir, sizes):
    """Part 5: a seedbox-sized library (bench/library.py)."""
    rows, failures = {}, []
    for total in sizes:
        note(f"a library of {total:,} jobs")
        try:
            rows[total] = library.measure_library(tracker, seeder, workdir, total)
        except Exception as error:  # the other sizes' figures still count
            note(f"the library of {total:,} jobs failed: {error!r}")
            failures.append(f"{total:,} jobs: FAILED: {type(error).__name__}: {error}")
    report.data["library"] = rows
    if not rows:
        raise RuntimeError("; ".join(failures))
    title = f"### A library of {' and '.join(f'{size:,}' for size in rows)} jobs"
    failed = "".join(f"\n\n{line}" for line in failures)
    report.add(f"{title}\n\n{library.report(rows, percentile)}{failed}", [])


def part_cluster(report, workdir):
    """Cluster mode against embedded mode (bench/cluster_mode.py, with its defaults)."""
    import cluster_mode

    options = cluster_mode.parse_args([])
    (workdir / "cluster").mkdir()
    web, nodes = cluster_mode.measure(workdir / "cluster", options)
    report.add(f"### Cluster mode\n\n{cluster_mode.table(web, nodes, options)}", [])


def run_part(report, title, part, *args):
    """Run one part; if it breaks, the report says so and the other parts still run."""
    try:
        part(report, *args)
    except Exception as error:  # a broken part is a finding; the others still measure
        note(f"{title} failed: {error!r}")
        report.sections.append(f"### {title}\n\nFAILED: {type(error).__name__}: {error}")


def main(argv=None):
    """Run the parts asked for, then print and keep the report."""
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, stop_on_sigterm)  # so every `finally` stops what it started
    parts = set(args.parts.split(","))
    began = time.monotonic()
    report = Report(data={"args": vars(args)})
    workdir = Path(tempfile.mkdtemp(prefix="hashdrop-bench-", dir=args.workdir))
    seeder = Seeder(log_dir=workdir, utp=True)  # for --raw-variant enable_outgoing_utp=true
    try:
        with Tracker() as tracker:
            if "throughput" in parts:
                note(f"writing two {args.size_mib} MiB payloads and their torrents in {workdir}")
                report.torrents = big_torrents(workdir / "payloads", tracker.announce_url, args.size_mib * MiB,
                                               args.files)
                tracker.add(*report.torrents.values())
            seeder.start(list(report.torrents.values()))
            if "throughput" in parts:
                run_part(report, "Download speed", part_throughput, args, tracker.announce_url, seeder, workdir)
            if "latency" in parts:
                run_part(report, "Submit latency", part_latency, tracker.announce_url, workdir)
            if "scale" in parts:
                run_part(report, f"{SCALE_JOBS:,} jobs", part_scale, tracker, seeder, workdir)
            if "churn" in parts:
                run_part(report, "Jobs that come and go", part_churn, tracker, seeder, workdir)
            if "library" in parts:
                sizes = [int(size) for size in args.library_sizes.split(",")]
                run_part(report, "A library", part_library, tracker, seeder, workdir, sizes)
            if "cluster" in parts:
                run_part(report, "Cluster mode", part_cluster, workdir)
    finally:
        seeder.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    text = report.text(time.monotonic() - began)
    print(text)
    note(f"written to {write_results(text, report.data)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
