"""The benchmark's cluster row: cluster mode's web app against embedded mode in the same run, and
two capped download nodes against one on a batch of torrents. Everything on loopback: its own
PostgreSQL and Redis (tests/cluster_servers.py), tracker and seeder (tests/swarm.py), the nodes
as the tests start them (tests/cluster_nodes.py).

bench/bench.py runs it as its `cluster` part (measure() and table()); alone:
    bench/cluster_mode.py [--parts web,nodes] [--submits 200] [--jobs 1000] [--torrents 8]
                          [--size-mib 8] [--node-limit-mib 2]
prints one line per measurement and a markdown table; docs/performance.md quotes a run.
"""
import argparse
import secrets
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent / "tests"))  # the tests' servers, swarm and nodes
sys.path.insert(0, str(BENCH.parent))

from app_server import AppServer  # noqa: E402
from cluster_nodes import NODE_HOSTS, Node, cluster_settings  # noqa: E402
from cluster_servers import PostgresServer, RedisServer  # noqa: E402
from swarm import Seeder, Tracker, check_files, make_payload, make_torrent, wait_until  # noqa: E402

MiB = 1024 * 1024
TARGETS = {"submit_p99_ratio": 1.5, "page_p99_ratio": 1.5, "two_nodes_ratio": 0.6}


def note(message):
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def percentile(samples, p):
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def random_hashes(count):
    return [secrets.token_hex(20) for _ in range(count)]


def ms(samples):
    return f"p50 {1000 * percentile(samples, 50):.1f} ms, p99 {1000 * percentile(samples, 99):.1f} ms"


# The web app: embedded against cluster mode ---------------------------------------------------
def web_apps(workdir, settings):
    """An embedded app and a cluster-mode app (no node: its jobs wait queued), both `python app.py`."""
    embedded = AppServer(workdir / "embedded", "http://127.0.0.1:9/announce")
    cluster = AppServer(workdir / "cluster", "http://127.0.0.1:9/announce")
    cluster.env.update({f"HASHDROP_{key}": str(value) for key, value in settings.items()})
    return {"embedded": embedded.start(), "cluster": cluster.start()}


def measure_web(workdir, settings, submits, jobs):
    """Submit latency (1 hash by the form) and, at `jobs` jobs, GET /api/jobs and GET / times, the
    two apps taking turns so that both see the same machine."""
    apps = web_apps(workdir, settings)
    try:
        found = {name: {"submit": [], "api": [], "page": []} for name in apps}
        for name, app in apps.items():
            app.fetch_token()
        for _ in range(submits):
            for name, app in apps.items():
                found[name]["submit"].append(app.submit_form(random_hashes(1)))
        for name, app in apps.items():
            app.submit_api(random_hashes(jobs - submits))
            note(f"{name}: {len(app.jobs())} jobs")
        time.sleep(3)  # both settle: the embedded threads start, the cluster's mirror refreshes
        for _ in range(100):
            for name, app in apps.items():
                found[name]["api"].append(app.timed("GET", "/api/jobs"))
                found[name]["page"].append(app.timed("GET", "/"))
        for name, figures in found.items():
            for what, samples in figures.items():
                note(f"{name} {what}: {ms(samples)}")
        return found
    finally:
        for app in apps.values():
            app.stop()


# Two nodes against one --------------------------------------------------------------------------
def seed_batch(workdir, tracker, seeder, count, size):
    torrents = []
    for number in range(count):
        payload = make_payload(workdir / "payloads", f"batch-{number}.bin", size, seed=secrets.token_hex(8))
        torrent = make_torrent(payload, tracker.announce_url)
        tracker.add(torrent)
        seeder.add(torrent)
        torrents.append(torrent)
    return torrents


def batch_seconds(workdir, settings, tracker, torrents, node_count, limit):
    """Seconds from submit to every job completed (SHA-256 checked) with node_count nodes, each
    capped at limit bytes/s (standing in for each machine's own link), through the web app."""
    import store.postgres as postgres
    from cluster.celery_app import make_celery

    database = postgres.PostgresJobStore(settings["DATABASE_URL"])
    celery = make_celery(settings)
    web = AppServer(workdir / "web", tracker.announce_url)
    web.env.update({f"HASHDROP_{key}": str(value) for key, value in settings.items()})
    web.start()
    nodes = [Node(celery, f"dl{n}", host, workdir, {**settings, "DOWNLOAD_LIMIT": str(limit)}, concurrency=2)
             for n, host in enumerate(NODE_HOSTS[:node_count], 1)]
    try:
        for node in nodes:
            node.start()
        started = time.monotonic()
        web.submit_api([torrent.info_hash for torrent in torrents])
        wait_until(lambda: all(job["state"] == "completed" for job in web.jobs()), 600,
                   "the batch did not complete", interval=0.2)
        seconds = time.monotonic() - started
        rows = {row["info_hash"]: row for row in database.load()}
        for torrent in torrents:
            owner = next(node for node in nodes if node.name == rows[torrent.info_hash]["node"])
            check_files(torrent, owner.save_path)
        spread = {node.name: sum(row["node"] == node.name for row in rows.values()) for node in nodes}
        note(f"{node_count} node(s): {seconds:.1f} s, jobs per node {spread}")
        return seconds
    finally:
        web.stop()
        for node in nodes:
            node.stop()
        database.close()


def measure_nodes(workdir, postgres, redis, count, size, limit):
    with Tracker() as tracker, Seeder(log_dir=workdir) as seeder:
        torrents = seed_batch(workdir, tracker, seeder, count, size)
        figures = {}
        for node_count in (1, 2):
            run = workdir / f"nodes-{node_count}"
            run.mkdir()
            settings = cluster_settings(redis.url, make_database(postgres, f"nodes{node_count}"))
            figures[node_count] = batch_seconds(run, settings, tracker, torrents, node_count, limit)
        return figures


def make_database(postgres, name):
    import psycopg

    with psycopg.connect(postgres.url(), autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    return postgres.url(name)


# The report ------------------------------------------------------------------------------------
def table(web, nodes, options):
    """The cluster row as a markdown table: each measure, both modes, the ratio and its verdict."""
    rows = ["| measure | embedded | cluster | cluster / embedded | target |", "|---|---|---|---|---|"]
    if web:
        for what, label, key in (("submit", "submit 1 hash (form)", "submit_p99_ratio"),
                                 ("api", f"{options.jobs:,} jobs: GET /api/jobs", "page_p99_ratio"),
                                 ("page", f"{options.jobs:,} jobs: GET / (25 rows)", "page_p99_ratio")):
            embedded, cluster = web["embedded"][what], web["cluster"][what]
            ratio = percentile(cluster, 99) / percentile(embedded, 99)
            verdict = "PASS" if ratio <= TARGETS[key] else "FAIL"
            rows.append(f"| {label} | {ms(embedded)} | {ms(cluster)} | {ratio:.2f} (p99) | ≤ {TARGETS[key]} {verdict} |")
    if nodes:
        ratio = nodes[2] / nodes[1]
        verdict = "PASS" if ratio <= TARGETS["two_nodes_ratio"] else "FAIL"
        rows.append(f"| {options.torrents} × {options.size_mib} MiB, nodes capped at {options.node_limit_mib} "
                    f"MiB/s | 1 node {nodes[1]:.1f} s | 2 nodes {nodes[2]:.1f} s | {ratio:.2f} | "
                    f"≤ {TARGETS['two_nodes_ratio']} {verdict} |")
    return "\n".join(rows)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default="web,nodes")
    parser.add_argument("--submits", type=int, default=200)
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--torrents", type=int, default=8)
    parser.add_argument("--size-mib", type=int, default=8)
    parser.add_argument("--node-limit-mib", type=float, default=2)
    return parser.parse_args(argv)


def measure(workdir, options):
    """(web figures or None, nodes figures or None), on this run's own PostgreSQL and Redis."""
    parts = set(options.parts.split(","))
    postgres, redis = PostgresServer().start(), RedisServer().start()
    web = nodes = None
    try:
        if "web" in parts:
            web = measure_web(workdir, cluster_settings(redis.url, make_database(postgres, "web")),
                              options.submits, options.jobs)
        if "nodes" in parts:
            nodes = measure_nodes(workdir, postgres, redis, options.torrents, options.size_mib * MiB,
                                  int(options.node_limit_mib * MiB))
    finally:
        redis.stop()
        postgres.stop()
    return web, nodes


def main():
    options = parse_args()
    web, nodes = measure(Path(tempfile.mkdtemp(prefix="hashdrop-bench-cluster-")), options)
    print(table(web, nodes, options))


if __name__ == "__main__":
    main()
