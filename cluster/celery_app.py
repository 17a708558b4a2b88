"""The cluster's Celery app, as the web app and every download node configure it.

Celery is only the dispatch, control and monitoring layer: who holds a job is the job's row in
PostgreSQL (node, epoch), so every redelivered or duplicated task is a harmless no-op (the claim
fails). docs/design.md "Cluster mode: the node" and /work/shared/scale-out-notes.md §2 say why
each setting is what it is.
"""
from celery import Celery
from celery.utils.nodenames import worker_direct

DOWNLOADS_QUEUE = "hashdrop.downloads"  # the shared queue: the first node with a free slot takes a job
DOWNLOAD_TASK = "hashdrop.download"


def direct_queue(node):
    """The queue only node (its Celery hostname, "dl1@host") consumes (worker_direct: Celery 5
    names it "<node>.dq2"); send_task(..., queue=direct_queue(node)) sends a task there."""
    return worker_direct(node)


def make_celery(config):
    """A Celery app for config's HASHDROP_BROKER_URL. Creating it connects to nothing."""
    app = Celery("hashdrop", broker=config["BROKER_URL"], set_as_current=False)
    timeout = int(config["VISIBILITY_TIMEOUT"])
    # Set in all three places (celery#7651), and the same in the web app and every node: on
    # Redis the shortest one among clients wins.
    transport = {"visibility_timeout": timeout, "unacked_restore_interval": min(10, timeout),
                 "unacked_restore_throttle": 1, "socket_timeout": 30, "socket_keepalive": True,
                 "health_check_interval": 25}
    app.conf.update(
        task_ignore_result=True,  # a job's state lives in PostgreSQL, not in task results
        task_serializer="json", accept_content=["json"],
        # The message is acked when the task returns, and a node fetches one only when a pool
        # thread is free: no node holds a queued job while another is idle.
        task_acks_late=True, worker_prefetch_multiplier=1,
        worker_direct=True,  # <node>.dq: a resumed job goes back to the node that has its files
        task_routes={DOWNLOAD_TASK: {"queue": DOWNLOADS_QUEUE}},
        task_default_queue=DOWNLOADS_QUEUE,
        broker_transport_options=transport, result_backend_transport_options=transport,
        visibility_timeout=timeout,
        worker_cancel_long_running_tasks_on_connection_loss=False,  # threads cannot be cancelled; the epoch fences
        task_track_started=True, worker_send_task_events=True,  # Flower and `celery events`
        broker_connection_retry_on_startup=True,
    )
    return app
