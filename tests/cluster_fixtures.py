"""Pytest fixtures for the cluster tier: one PostgreSQL and one Redis for the session, and a fresh
database per test. Tests using them are marked @pytest.mark.cluster."""
# tests/conftest.py loads these with `from cluster_fixtures import *`, as it does swarm_fixtures.
import uuid

import pytest

from cluster_servers import PostgresServer, RedisServer, missing_postgres, missing_redis

__all__ = ["postgres_server", "redis_server", "pg_database"]


@pytest.fixture(scope="session")
def postgres_server():
    """Run one PostgreSQL on 127.0.0.1 for the test session (skipped where it is not installed)."""
    problem = missing_postgres()
    if problem:
        pytest.skip(problem)
    server = PostgresServer()
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture(scope="session")
def redis_server():
    """Run one redis-server on 127.0.0.1 for the test session (skipped where it is not installed)."""
    problem = missing_redis()
    if problem:
        pytest.skip(problem)
    server = RedisServer()
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture
def pg_database(postgres_server):
    """A new, empty database of the session's PostgreSQL for one test: its URL; dropped after."""
    psycopg = pytest.importorskip("psycopg", reason="psycopg is not installed (pip install -r requirements-cluster.txt)")
    name = f"t_{uuid.uuid4().hex}"
    with psycopg.connect(postgres_server.url(), autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    try:
        yield postgres_server.url(name)
    finally:
        if postgres_server.running():  # a test that stopped the server starts it again, but may have failed first
            with psycopg.connect(postgres_server.url(), autocommit=True) as admin:
                admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
