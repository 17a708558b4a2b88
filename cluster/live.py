"""Live progress in Redis: each node rewrites its jobs' views about every second, the web app
reads them. Key hashdrop:live:<node> = a hash {info_hash: JSON of jobs.view.job_view(job)}
that expires LIVE_SECONDS after the node last wrote it, so a dead node's progress goes by itself.

Every Redis error is caught and logged, never raised: a Redis restart must not fail a download
(scale-out notes E8: an uncaught ConnectionError failed the task, and its ack was impossible).
"""
import json
import logging

import redis

log = logging.getLogger(__name__)
KEY_PREFIX = "hashdrop:live:"
LIVE_SECONDS = 10  # a node's views outlive its last write this long


def key(node):
    return KEY_PREFIX + node


def connect(url):
    """A Redis client for the broker's URL that gives up on a dead server in seconds (it connects
    lazily). kombu's redis+socket:///path is redis-py's unix:///path."""
    if url.startswith("redis+socket://"):
        url = "unix://" + url[len("redis+socket://"):]
    return redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5, health_check_interval=25)


def publish(client, node, views):
    """Replace node's live views ({info_hash: view dict}) in one pipeline; whether Redis took them."""
    pipeline = client.pipeline(transaction=True)
    pipeline.delete(key(node))
    if views:
        pipeline.hset(key(node), mapping={info_hash: json.dumps(view) for info_hash, view in views.items()})
        pipeline.expire(key(node), LIVE_SECONDS)
    try:
        pipeline.execute()
    except redis.RedisError as exc:
        log.warning("cannot publish live progress of %s to Redis: %s", node, exc)
        return False
    return True


def read(client, nodes):
    """{info_hash: view} of every job the given nodes publish; {} for a node Redis cannot tell."""
    nodes = list(nodes)
    pipeline = client.pipeline(transaction=False)
    for node in nodes:
        pipeline.hgetall(key(node))
    try:
        hashes = pipeline.execute()
    except redis.RedisError as exc:
        log.warning("cannot read live progress from Redis: %s", exc)
        return {}
    views = {}
    for node, fields in zip(nodes, hashes):
        for info_hash, text in fields.items():
            try:
                views[info_hash.decode()] = json.loads(text)
            except (ValueError, UnicodeDecodeError):
                log.warning("node %s published an unreadable view for %r", node, info_hash)
    return views
