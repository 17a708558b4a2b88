"""What keeps jobs: the JobStore interface and the store HASHDROP_STORE names."""
import os

from config import load_factory
from store.base import JobStore, StoreError, StoreWriteError
from store.sqlite import SQLiteJobStore

__all__ = ["JobStore", "StoreError", "StoreWriteError", "open_store"]


def open_store(config):
    """The store HASHDROP_STORE names: "sqlite" (the default: hashdrop.sqlite3 in DATA_DIR),
    "postgres" (HASHDROP_DATABASE_URL's database; cluster mode's), or "module:factory" called
    with the config, which returns a JobStore."""
    name = config.get("STORE") or "sqlite"
    if name == "sqlite":
        os.makedirs(config["DATA_DIR"], exist_ok=True)
        return SQLiteJobStore(os.path.join(config["DATA_DIR"], "hashdrop.sqlite3"))
    if name == "postgres":
        from store.postgres import PostgresJobStore  # here: embedded mode never imports psycopg

        return PostgresJobStore(config["DATABASE_URL"])
    return load_factory(name, "STORE")(config)
