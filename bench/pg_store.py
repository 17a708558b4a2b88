"""Measure the PostgreSQL job store on a loopback server of its own: one connection under a lock
(store.postgres as built) against a psycopg_pool of 4 connections, for the writes jobs make.

Usage: bench/pg_store.py [--jobs 1000] [--threads 4] [--writes 500]
Prints one line per measurement; docs/design.md ("PostgreSQL store") quotes a run.
"""
import argparse
import secrets
import statistics
import sys
import threading
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent / "tests"))  # cluster_servers.py: the tests' PostgreSQL
sys.path.insert(0, str(BENCH.parent))

import psycopg  # noqa: E402
from cluster_servers import PostgresServer  # noqa: E402
from store.postgres import PostgresJobStore  # noqa: E402


def record(info_hash, number):
    return {"info_hash": info_hash, "added_at": f"2026-01-01T10:00:{number % 60:02d}", "state": "queued",
            "save_path": "/srv/media", "category": "", "sequential": 0, "number": number, "labels": "[]",
            "source": "api", "seeding_stopped": 0, "seed_limits": "{}"}


def timed(action):
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def in_threads(threads, writes, write):
    """Run write(thread, n) writes times in each of threads threads; (seconds, [latency, ...])."""
    latencies, lock = [], threading.Lock()

    def work(thread):
        mine = [timed(lambda: write(thread, n)) for n in range(writes)]
        with lock:
            latencies.extend(mine)

    workers = [threading.Thread(target=work, args=(t,), name=f"bench-{t}") for t in range(threads)]
    start = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return time.perf_counter() - start, latencies


def report(label, seconds, latencies):
    latencies.sort()
    p99 = latencies[int(len(latencies) * 0.99) - 1]
    print(f"{label}: {len(latencies) / seconds:,.0f} writes/s, p50 {statistics.median(latencies) * 1e3:.2f} ms, "
          f"p99 {p99 * 1e3:.2f} ms")


def main(args):
    with PostgresServer() as server:
        with psycopg.connect(server.url(), autocommit=True) as admin:
            admin.execute("CREATE DATABASE bench")
        url = server.url("bench")
        store = PostgresJobStore(url)
        hashes = [secrets.token_hex(20) for _ in range(args.jobs)]
        print(f"save_many of {args.jobs} jobs: {timed(lambda: store.save_many([record(h, n + 1) for n, h in enumerate(hashes)])) * 1e3:.1f} ms")
        loads = [timed(store.load) for _ in range(20)]
        print(f"load of {args.jobs} jobs: p50 {statistics.median(loads) * 1e3:.2f} ms")
        report("update, 1 thread", *in_threads(1, args.writes, lambda t, n: store.update(hashes[n], name=f"n{n}")))
        report(f"update, {args.threads} threads, one connection under the lock",
               *in_threads(args.threads, args.writes, lambda t, n: store.update(hashes[t * args.writes + n], name="x")))
        claimed = [store.claim(h, "dl1") for h in hashes[: args.threads * args.writes]]
        assert claimed == [1] * len(claimed)
        report(f"update_fenced, {args.threads} threads, one connection under the lock",
               *in_threads(args.threads, args.writes, lambda t, n: store.update_fenced(hashes[t * args.writes + n],
                                                                                       "dl1", 1, state="downloading")))
        pool_writes(url, hashes, args)
        server.stop(remove=False)
        down = [timed(lambda: store.update(hashes[0], state="paused")) for _ in range(20)]
        print(f"update while the database is down (kept for later): p50 {statistics.median(down) * 1e3:.2f} ms")
        server.start()
        print(f"the next write, the waiting change with it: {timed(lambda: store.update(hashes[1], name='y')) * 1e3:.2f} ms")
        store.close()


def pool_writes(url, hashes, args):
    """The same single-row UPDATE through a psycopg_pool of args.threads connections, no store lock."""
    from psycopg_pool import ConnectionPool

    with ConnectionPool(url, min_size=args.threads, max_size=args.threads, kwargs={"autocommit": True}) as pool:
        pool.wait()

        def write(thread, n):
            with pool.connection() as connection:
                connection.execute("UPDATE jobs SET name = %s WHERE info_hash = %s", ("p", hashes[thread * args.writes + n]))

        report(f"update, {args.threads} threads, psycopg_pool of {args.threads}", *in_threads(args.threads, args.writes, write))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--writes", type=int, default=200)
    main(parser.parse_args())
