"""Cluster mode (HASHDROP_MODE=cluster, issue #22): download nodes on Celery, jobs in PostgreSQL,
live progress in Redis. Embedded mode never imports this package (tests/test_seams.py)."""
