"""The Celery app of a hashdrop download node, from the HASHDROP_* environment:

    celery -A hashdrop_cluster worker --pool threads --concurrency 5 -n dl1@%h -Q hashdrop.downloads

Importing this creates the app object only: it opens no connection and starts nothing; the
worker's bootstep (cluster.node) makes the libtorrent session when the worker starts.
"""
import config
from cluster import node
from cluster.celery_app import make_celery

settings = config.load_plain()
app = make_celery(settings)
node.install(app, settings)
