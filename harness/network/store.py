"""The network's state in SQLite (stdlib sqlite3): one file per run, so a run can be inspected afterwards.

Each entity gets its own tables, prefixed by the entity (``icf_credentials``, ``sho_subscribers``...),
through a tiny helper: ``define`` a table, ``put`` a row (insert or replace), ``get`` one row by
its key, ``select`` rows, ``delete`` rows. Columns declared ``JSON`` hold dicts/lists; ``BLOB``
columns hold bytes; the rest are SQLite's own types.

Columns declared ``SECRET`` (K, OPc) never reach the file: the row in SQLite holds NULL there and
the value stays in this process's memory, merged back into every row read. A run's database can
be handed around; a store reopened from the file has no keys.

The connection is shared by every entity and guarded by a lock: the emulated modem calls the
VNO from its own thread.
"""

from __future__ import annotations

import json
import re
import sqlite3
import threading
from pathlib import Path
from typing import Any

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_ABSENT = object()  # a SECRET column the put did not give


class StoreError(Exception):
    """A table or a row could not be defined, written or read."""


class Store:
    """One SQLite database for the whole network of a run (``":memory:"`` allowed)."""

    def __init__(self, path: str | Path = ":memory:") -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        # isolation_level=None: autocommit, every put lands at once (a run can be read mid-way)
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        if self.path != ":memory:":
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
        self._json_columns: dict[str, set[str]] = {}
        self._secret_columns: dict[str, set[str]] = {}
        # table -> key -> the SECRET columns' values in declaration order (_ABSENT where not given);
        # only tables that declare SECRET columns have an entry (a fleet has 10^5 rows per table)
        self._secrets: dict[str, dict[tuple[Any, ...], tuple[Any, ...]]] = {}
        self._secret_order: dict[str, tuple[str, ...]] = {}
        self._keys: dict[str, tuple[str, ...]] = {}

    def entity(self, prefix: str) -> Tables:
        """The tables of one entity, named ``<prefix>_<table>``."""
        _check_name(prefix)
        return Tables(self, prefix)

    def tables(self) -> list[str]:
        with self._lock:
            rows = self._db.execute("SELECT name FROM sqlite_master WHERE type='table' ORDER BY name")
            return [r[0] for r in rows]

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- used by Tables ------------------------------------------------------------------
    def _define(self, table: str, columns: dict[str, str], key: tuple[str, ...]) -> None:
        for name in columns:
            _check_name(name)
        missing = [k for k in key if k not in columns]
        if missing:
            raise StoreError(f"{table}: key column(s) {missing} not among the columns")
        cols = ", ".join(f"{name} {_sql_type(kind)}" for name, kind in columns.items())
        sql = f"CREATE TABLE IF NOT EXISTS {table} ({cols}, PRIMARY KEY ({', '.join(key)}))"
        with self._lock:
            self._db.execute(sql)
            self._json_columns[table] = {n for n, kind in columns.items() if kind.upper() == "JSON"}
            self._secret_columns[table] = {n for n, kind in columns.items() if kind.upper() == "SECRET"}
            self._secret_order[table] = tuple(n for n in columns if n in self._secret_columns[table])
            if self._secret_columns[table]:
                self._secrets.setdefault(table, {})
            if self._secret_columns[table] & set(key):
                raise StoreError(f"{table}: a SECRET column cannot be part of the key")
            self._keys[table] = key

    def _put(self, table: str, row: dict[str, Any]) -> None:
        self._known(table)
        missing = [k for k in self._keys[table] if k not in row]
        if missing:
            raise StoreError(f"{table}: put without key column(s) {missing}")
        secret_names = self._secret_columns[table]
        secrets = tuple(row.get(name, _ABSENT) for name in self._secret_order[table])
        values = [None if name in secret_names else self._encode(table, name, value)
                  for name, value in row.items()]
        sql = (f"INSERT OR REPLACE INTO {table} ({', '.join(row)}) "
               f"VALUES ({', '.join('?' for _ in row)})")
        with self._lock:
            try:
                self._db.execute(sql, values)
            except sqlite3.Error as exc:
                raise StoreError(f"{table}: put {sorted(row)}: {exc}") from exc
            if secret_names:
                self._secrets[table][self._key_of(table, row)] = secrets

    def _select(self, table: str, where: dict[str, Any]) -> list[dict[str, Any]]:
        self._known(table)
        clause, values = _where(table, where, self)
        with self._lock:
            try:
                cursor = self._db.execute(f"SELECT * FROM {table}{clause}", values)
            except sqlite3.Error as exc:
                raise StoreError(f"{table}: select by {sorted(where)}: {exc}") from exc
            names = [d[0] for d in cursor.description]
            rows = cursor.fetchall()
        json_cols = self._json_columns[table]
        out = []
        for raw in rows:
            row = {n: (json.loads(v) if n in json_cols and v is not None else v) for n, v in zip(names, raw)}
            if self._secret_columns[table]:
                kept = self._secrets[table].get(self._key_of(table, row), ())
                row.update((n, v) for n, v in zip(self._secret_order[table], kept) if v is not _ABSENT)
            out.append(row)
        return out

    def _delete(self, table: str, where: dict[str, Any]) -> int:
        self._known(table)
        doomed = self._select(table, where) if self._secret_columns[table] else []
        clause, values = _where(table, where, self)
        with self._lock:
            count = self._db.execute(f"DELETE FROM {table}{clause}", values).rowcount
            for row in doomed:
                self._secrets[table].pop(self._key_of(table, row), None)
        return count

    def _key_of(self, table: str, row: dict[str, Any]) -> tuple[Any, ...]:
        return tuple(self._encode(table, k, row[k]) for k in self._keys[table])

    def _known(self, table: str) -> None:
        if table not in self._keys:
            raise StoreError(f"table {table} is not defined")

    def _encode(self, table: str, name: str, value: Any) -> Any:
        _check_name(name)
        if name in self._json_columns[table]:
            return None if value is None else json.dumps(value, sort_keys=True)
        if isinstance(value, (bytearray, memoryview)):
            return bytes(value)
        if isinstance(value, bool):
            return int(value)
        return value


class Tables:
    """An entity's view of the store: table names are prefixed with the entity's."""

    def __init__(self, store: Store, prefix: str) -> None:
        self.store = store
        self.prefix = prefix

    def name(self, table: str) -> str:
        _check_name(table)
        return f"{self.prefix}_{table}"

    def define(self, table: str, columns: dict[str, str], key: str | tuple[str, ...]) -> None:
        """CREATE TABLE IF NOT EXISTS; ``columns`` maps name -> TEXT/INTEGER/REAL/BLOB/JSON/SECRET."""
        self.store._define(self.name(table), columns, (key,) if isinstance(key, str) else tuple(key))

    def put(self, table: str, **row: Any) -> None:
        """Insert or replace one row (every column not given becomes NULL)."""
        self.store._put(self.name(table), row)

    def get(self, table: str, **key: Any) -> dict[str, Any] | None:
        rows = self.store._select(self.name(table), key)
        return rows[0] if rows else None

    def select(self, table: str, **where: Any) -> list[dict[str, Any]]:
        return self.store._select(self.name(table), where)

    def update(self, table: str, key: dict[str, Any], **changes: Any) -> dict[str, Any]:
        """Change some columns of an existing row; StoreError if there is none."""
        row = self.get(table, **key)
        if row is None:
            raise StoreError(f"{self.name(table)}: no row {key}")
        row.update(changes)
        self.put(table, **row)
        return row

    def delete(self, table: str, **where: Any) -> int:
        return self.store._delete(self.name(table), where)

    def index(self, table: str, *columns: str) -> None:
        """An index on columns rows are selected by (a fleet's tables hold 10^5 rows and more)."""
        for name in columns:
            _check_name(name)
        full = self.name(table)
        with self.store._lock:
            self.store._db.execute(f"CREATE INDEX IF NOT EXISTS {full}_by_{'_'.join(columns)} "
                                   f"ON {full} ({', '.join(columns)})")

    def max_number(self, table: str, column: str, *, after: int = 0) -> int | None:
        """The largest number in a digit-string column, skipping its first ``after`` characters
        (an IMSI's MSIN after the PLMN), by SQL without reading every row; None if empty."""
        _check_name(column)
        with self.store._lock:
            row = self.store._db.execute(f"SELECT MAX(CAST(SUBSTR({column}, ?) AS INTEGER)) "
                                         f"FROM {self.name(table)}", (after + 1,)).fetchone()
        return row[0]


_CHECKED: set[str] = set()  # names already found good (a put checks its columns' names each time)


def _check_name(name: str) -> None:
    if name in _CHECKED:
        return
    if not _NAME.match(name):
        raise StoreError(f"bad table/column name {name!r}")
    if len(_CHECKED) < 10_000:
        _CHECKED.add(name)


def _sql_type(kind: str) -> str:
    kind = kind.upper()
    if kind == "JSON":
        return "TEXT"
    if kind == "SECRET":
        return "BLOB"  # always NULL in the file
    if kind not in ("TEXT", "INTEGER", "REAL", "BLOB"):
        raise StoreError(f"unknown column type {kind}")
    return kind


def _where(table: str, where: dict[str, Any], store: Store) -> tuple[str, list[Any]]:
    if not where:
        return "", []
    parts = []
    values = []
    for name, value in where.items():
        _check_name(name)
        if name in store._secret_columns[table]:
            raise StoreError(f"{table}: cannot select by the secret column {name}")
        if value is None:
            parts.append(f"{name} IS NULL")
        else:
            parts.append(f"{name} = ?")
            values.append(store._encode(table, name, value))
    return " WHERE " + " AND ".join(parts), values
