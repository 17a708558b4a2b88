"""The node's one task: hashdrop.download(info_hash), the lease on one download slot.

It claims the job (a refused claim is a harmless no-op: a duplicate, a redelivery, a paused or
removed job), runs it in the node's JobManager, and returns once the job no longer needs a slot
or the node stops; the message is acked then (acks_late). cluster.node does the work.
"""
import logging

from cluster import node
from cluster.celery_app import DOWNLOAD_TASK
from store.base import StoreError

log = logging.getLogger(__name__)
DATABASE_RETRY_SECONDS = 5


def register(app):
    """Register the download task on app (a node's Celery app)."""

    @app.task(name=DOWNLOAD_TASK, bind=True, max_retries=None)
    def download(self, info_hash):
        try:
            return node.current().download(info_hash)
        except StoreError as exc:  # the database is down: try again later, on any node
            log.warning("cannot claim %s now: %s", info_hash, exc)
            raise self.retry(countdown=DATABASE_RETRY_SECONDS) from None

    return download
