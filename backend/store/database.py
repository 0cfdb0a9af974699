"""The SQLite file under `MODEL_DIR` (`backend.sqlite`) that survives restarts and is shared by every worker
process: one connection per thread, autocommit, WAL mode (several writers; every write a short transaction)."""

from __future__ import annotations

import sqlite3
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


class Database:
    """Thread-safe access to one SQLite file; `ensure(schema)` creates tables the first time."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()

    def connect(self) -> sqlite3.Connection:
        """This thread's connection (autocommit; WAL; rows as `sqlite3.Row`)."""
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.row_factory = sqlite3.Row
            self._local.db = db
        return db

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """`BEGIN IMMEDIATE` (the write lock at once) … `COMMIT` on this thread's connection; rolled back when the
        block raises. A failed COMMIT (a full disk) has already rolled back in SQLite: its error is what propagates."""
        db = self.connect()
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise

    def ensure(self, schema: str) -> "Database":
        """Run `CREATE ... IF NOT EXISTS` statements; returns self."""
        self.connect().executescript(schema)
        return self

    def ensure_columns(self, table: str, columns: tuple[tuple[str, str], ...]) -> "Database":
        """Add the (name, definition) columns `table` lacks (columns added after a state file was first written);
        returns self."""
        have = {row["name"] for row in self.connect().execute(f"PRAGMA table_info({table})")}
        for name, definition in columns:
            if name not in have:
                try:
                    self.connect().execute(f"ALTER TABLE {table} ADD COLUMN {name} {definition}")
                except sqlite3.OperationalError:  # another process added it meanwhile
                    pass
        return self
