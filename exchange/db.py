"""The SQL database behind the ledger and Admin's campaigns: SQLite by default,
PostgreSQL by URL, one schema kept current by numbered migrations.

    sqlite:///var/attnx.db        a file, relative to the working directory
    sqlite:////srv/attnx/ledger.db   an absolute path
    postgresql://user@host:5432/db   (psycopg 3)

Queries are written once with `?` placeholders; the PostgreSQL connection
rewrites them. SQLite runs in WAL mode with synchronous=FULL: a commit is on
disk when it returns, which is what a ledger needs.
"""

from __future__ import annotations

import sqlite3
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from exchange.migrations import MIGRATIONS

COPY_FROM = 64  # PostgreSQL bulk inserts of this many rows or more use COPY


class DatabaseError(RuntimeError):
    """The database URL is wrong or the database cannot be reached."""


@dataclass(frozen=True)
class Database:
    url: str

    def __post_init__(self) -> None:
        if not self.url.startswith(("sqlite:///", "postgresql://", "postgres://")):
            raise DatabaseError(
                f'store.url "{self.url}" must start with sqlite:/// (a file) or postgresql://'
            )

    @property
    def dialect(self) -> str:
        return "sqlite" if self.url.startswith("sqlite:") else "postgresql"

    @property
    def path(self) -> Path:
        """The SQLite file."""
        return Path(self.url.removeprefix("sqlite:///"))

    def connect(self) -> Connection:
        if self.dialect == "sqlite":
            self.path.parent.mkdir(parents=True, exist_ok=True)
            raw = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            raw.execute("PRAGMA journal_mode=WAL")
            raw.execute("PRAGMA synchronous=FULL")
            raw.execute("PRAGMA busy_timeout=5000")
            raw.execute("PRAGMA cache_size=-32768")  # 32 MiB: random trade ids miss a small one
            return SqliteConnection(raw)
        try:
            import psycopg
        except ImportError:
            raise DatabaseError(
                "a postgresql:// store needs psycopg: pip install psycopg"
            ) from None
        try:
            return PostgresConnection(psycopg.connect(self.url, autocommit=True))
        except psycopg.OperationalError as exc:
            raise DatabaseError(f"cannot connect to {self.url}: {exc}".strip()) from None

    def migrate(self) -> list[int]:
        """Bring the schema up to date; returns the versions applied now."""
        with self.connect() as conn:
            return migrate(conn)


class Connection(ABC):
    """One connection with `?` queries; `transaction()` commits or rolls back as a whole."""

    for_update = ""  # row locks where the database has them (SQLite locks the whole file)
    for_share = ""
    skip_locked = ""  # rows another transaction holds are passed over, not waited for

    @abstractmethod
    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any: ...

    @abstractmethod
    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None: ...

    @abstractmethod
    def insert_many(self, table: str, rows: Sequence[Sequence[Any]]) -> None:
        """Append rows (all columns, in order) the fastest way the database has."""

    @abstractmethod
    def transaction(self) -> AbstractContextManager[None]: ...

    @abstractmethod
    def savepoint(self) -> AbstractContextManager[None]:
        """Inside a transaction: undo only this part if it fails."""

    @abstractmethod
    def has_table(self, name: str) -> bool: ...

    @abstractmethod
    def close(self) -> None: ...

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        return list(self.execute(sql, params).fetchall())

    def one(self, sql: str, params: Sequence[Any] = ()) -> tuple | None:
        return self.execute(sql, params).fetchone()

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class SqliteConnection(Connection):
    def __init__(self, raw: sqlite3.Connection) -> None:
        self.raw = raw

    def execute(self, sql, params=()):
        return self.raw.execute(sql, params)

    def executemany(self, sql, rows):
        self.raw.executemany(sql, rows)

    def insert_many(self, table, rows):
        if rows:
            marks = ", ".join("?" * len(rows[0]))
            self.raw.executemany(f"INSERT INTO {table} VALUES ({marks})", rows)

    @contextmanager
    def transaction(self):
        self.raw.execute("BEGIN IMMEDIATE")  # the write lock now, not at the first write
        try:
            yield
        except BaseException:
            self.raw.execute("ROLLBACK")
            raise
        self.raw.execute("COMMIT")

    @contextmanager
    def savepoint(self):
        self.raw.execute("SAVEPOINT item")
        try:
            yield
        except BaseException:
            self.raw.execute("ROLLBACK TO SAVEPOINT item")
            self.raw.execute("RELEASE SAVEPOINT item")
            raise
        self.raw.execute("RELEASE SAVEPOINT item")

    def has_table(self, name):
        q = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?"
        return self.one(q, (name,)) is not None

    def close(self):
        self.raw.close()


class PostgresConnection(Connection):
    for_update = " FOR UPDATE"
    for_share = " FOR SHARE"
    skip_locked = " FOR UPDATE SKIP LOCKED"

    def __init__(self, raw) -> None:
        self.raw = raw
        self._sql: dict[str, str] = {}

    def _pg(self, sql: str) -> str:
        converted = self._sql.get(sql)
        if converted is None:
            converted = self._sql[sql] = sql.replace("%", "%%").replace("?", "%s")
        return converted

    def execute(self, sql, params=()):
        return self.raw.execute(self._pg(sql), params)

    def executemany(self, sql, rows):
        with self.raw.cursor() as cur:
            cur.executemany(self._pg(sql), rows)

    def insert_many(self, table, rows):
        if len(rows) < COPY_FROM:
            if rows:
                marks = ", ".join("?" * len(rows[0]))
                self.executemany(f"INSERT INTO {table} VALUES ({marks})", rows)
            return
        with self.raw.cursor() as cur, cur.copy(f"COPY {table} FROM STDIN") as copy:
            for row in rows:  # COPY: about twice the rows a second of a batched INSERT
                copy.write_row(row)

    @contextmanager
    def transaction(self):
        with self.raw.transaction():
            yield

    def savepoint(self):
        return self.raw.transaction()  # nested: psycopg makes it a savepoint

    def has_table(self, name):
        q = (
            "SELECT 1 FROM information_schema.tables "
            "WHERE table_schema = current_schema() AND table_name = ?"
        )
        return self.one(q, (name,)) is not None

    def close(self):
        self.raw.close()


def migrate(conn: Connection) -> list[int]:
    """Apply every migration newer than the database's version, each in its own transaction.

    A file from before versioning (its tables exist, `schema_migrations` does not)
    is taken to be at version 1, which is what it holds.
    """
    if not conn.has_table("schema_migrations"):
        with conn.transaction():
            conn.execute(
                "CREATE TABLE schema_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL, "
                "applied_ns BIGINT NOT NULL)"
            )
            if conn.has_table("campaigns"):
                conn.execute(
                    "INSERT INTO schema_migrations VALUES (1, ?, 0)", (MIGRATIONS[0].name,)
                )
    done = {v for (v,) in conn.rows("SELECT version FROM schema_migrations")}
    applied = []
    for m in MIGRATIONS:
        if m.version in done:
            continue
        with conn.transaction():
            for statement in m.statements:
                conn.execute(statement)
            conn.execute(
                "INSERT INTO schema_migrations VALUES (?, ?, ?)",
                (m.version, m.name, time.time_ns()),
            )
        applied.append(m.version)
    return applied
