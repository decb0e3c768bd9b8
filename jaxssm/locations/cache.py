"""A persistent per-location answer cache (stdlib ``sqlite3``, WAL journal).

Rows are keyed by the folded location text (:func:`~jaxssm.locations.base.fold`) and a backend
*fingerprint* (backend, model, prompt version), so a new model or prompt misses instead of
reading stale answers. Every :meth:`LocationCache.put_many` commits at once: a run killed halfway
keeps every batch it finished, and a rerun asks only for the rest. Answers with status
``failed`` or ``pending`` are never stored, so they are retried.

A cache that cannot be opened or written (a folder where the file should be, a path under a
file, not an SQLite file, a full disk) raises :class:`LocationCacheError` naming the file; a
failed write is rolled back, so the cache keeps what it had.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from jaxssm.locations.base import UNANSWERED, LocationResult, country_name

SCHEMA_VERSION = 1
_CHUNK = 500  # keys per SELECT (SQLite's variable limit is 999 on old builds)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS locations (
    fingerprint TEXT NOT NULL,
    key TEXT NOT NULL,
    country TEXT,
    region TEXT,
    city TEXT,
    status TEXT NOT NULL,
    candidates TEXT NOT NULL DEFAULT '',
    source TEXT NOT NULL DEFAULT '',
    created_at REAL NOT NULL,
    PRIMARY KEY (fingerprint, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


class LocationCacheError(RuntimeError):
    """The cache file cannot be opened, read or written (the message names the file)."""


class LocationCache:
    """Answers by (folded text, fingerprint), in an SQLite file (``":memory:"`` for a throwaway).

    Args:
        path: the database file; its folder is created if missing.

    Example:
        >>> with LocationCache(":memory:") as cache:
        ...     _ = cache.put_many({"berlin": LocationResult("Berlin", "DE", status="ok")}, "fp")
        ...     cache.get_many(["berlin", "paris"], "fp")["berlin"].country
        'DE'
    """

    def __init__(self, path: str | os.PathLike):
        self.path = str(path)
        try:
            if self.path != ":memory:":
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            # One connection, guarded by a lock; the event loop's thread is the usual user.
            self._db = sqlite3.connect(self.path, check_same_thread=False)
        except (OSError, sqlite3.Error) as err:
            raise LocationCacheError(self._problem("cannot open", err)) from None
        self._lock = threading.Lock()
        try:
            with self._lock:
                self._open()
        except (OSError, sqlite3.Error) as err:
            self._db.close()
            raise LocationCacheError(self._problem("cannot open", err)) from None
        except LocationCacheError:
            self._db.close()
            raise

    def _problem(self, what: str, err: Exception) -> str:
        reason = getattr(err, "strerror", None) or str(err)
        if what == "cannot write":
            return f"cannot write the location cache {self.path}: {reason} (it keeps what it had)"
        return (
            f"cannot open the location cache {self.path}: {reason} (choose another --cache, or "
            "delete the file if it is not a cache)"
        )

    def _open(self) -> None:
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # durable across a killed process
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(_SCHEMA)
        row = self._db.execute("SELECT version FROM schema_version").fetchone()
        if row is None:
            self._db.execute("INSERT INTO schema_version VALUES (?)", (SCHEMA_VERSION,))
            self._db.commit()
        elif row[0] != SCHEMA_VERSION:
            raise LocationCacheError(
                f"location cache {self.path} has schema version {row[0]}, this code reads "
                f"version {SCHEMA_VERSION}: delete the file or choose another cache path"
            )

    def __repr__(self) -> str:
        return f"LocationCache({self.path!r})"

    def __enter__(self) -> LocationCache:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @staticmethod
    def _chunks(keys: Sequence[str]) -> Iterator[Sequence[str]]:
        for start in range(0, len(keys), _CHUNK):
            yield keys[start : start + _CHUNK]

    def get_many(self, keys: Sequence[str], fingerprint: str) -> dict[str, LocationResult]:
        """The cached answers among ``keys`` (folded texts), with ``source="cache"``."""
        found: dict[str, LocationResult] = {}
        keys = list(dict.fromkeys(keys))
        with self._lock:
            for chunk in self._chunks(keys):
                marks = ",".join("?" * len(chunk))
                rows = self._db.execute(
                    "SELECT key, country, region, city, status, candidates FROM locations "
                    f"WHERE fingerprint = ? AND key IN ({marks})",
                    (fingerprint, *chunk),
                )
                for key, country, region, city, status, candidates in rows:
                    found[key] = LocationResult(
                        text=key,
                        country=country,
                        country_name=country_name(country),
                        region=region,
                        city=city,
                        status=status,
                        source="cache",
                        candidates=tuple(c for c in candidates.split(";") if c),
                    )
        return found

    def put_many(self, items: Mapping[str, LocationResult], fingerprint: str) -> int:
        """Store answers by folded key and commit; ``failed`` / ``pending`` ones are skipped.
        Rows written. A write that fails (disk full) is rolled back: :class:`LocationCacheError`."""
        now = time.time()
        rows = [
            (
                fingerprint,
                key,
                r.country,
                r.region,
                r.city,
                r.status,
                ";".join(r.candidates),
                r.source,
                now,
            )
            for key, r in items.items()
            if r.status not in UNANSWERED
        ]
        if not rows:
            return 0
        with self._lock:
            try:
                with self._db:  # one transaction: committed whole, or rolled back
                    self._db.executemany(
                        "INSERT OR REPLACE INTO locations VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows
                    )
            except sqlite3.Error as err:
                raise LocationCacheError(self._problem("cannot write", err)) from None
        return len(rows)

    def count(self, fingerprint: str | None = None) -> int:
        """Rows stored (for one fingerprint, or all)."""
        with self._lock:
            if fingerprint is None:
                return self._db.execute("SELECT count(*) FROM locations").fetchone()[0]
            return self._db.execute(
                "SELECT count(*) FROM locations WHERE fingerprint = ?", (fingerprint,)
            ).fetchone()[0]

    def get_meta(self, key: str) -> str | None:
        """A small remembered setting (e.g. the response format an endpoint accepts)."""
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    def set_meta(self, key: str, value: str) -> None:
        with self._lock:
            try:
                with self._db:
                    self._db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))
            except sqlite3.Error as err:
                raise LocationCacheError(self._problem("cannot write", err)) from None
