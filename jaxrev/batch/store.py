"""Incremental, atomic, resumable storage of batch results.

Each finished piece of work is written as a pair of Parquet *parts* under ``OUT/parts/``: the
summary rows first, then the status rows (one per account). Each file is written to a temporary
name and renamed, so a part is either complete or absent. An account counts as done when a status
row with its ``(account, fingerprint)`` exists; a rerun skips it. Part names are derived from
their content, so a repeated write of the same work (a retried task) replaces a file with an
identical one, and :meth:`ResultStore.consolidate` keeps each ``(account, fingerprint)`` once.

A part that cannot be read (truncated by a crash of the disk, or damaged) is found by
:meth:`ResultStore.check` before a run starts: :class:`CorruptPartError` names it and the files to
delete, or with ``repair=True`` (``jaxrev batch --repair``) they are deleted and the part's
accounts fitted again.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd

from jaxrev.files import make_dir, write_csv, write_parquet

KEY = ["account", "fingerprint"]
KINDS = ("summary", "status")


class CorruptPartError(ValueError):
    """Part files of a batch output folder that cannot be read; the message says what to
    delete (or to rerun with ``--repair``)."""

    def __init__(self, files: list[Path], reasons: list[str]):
        self.files = files
        listed = "; ".join(f"{f} ({r})" for f, r in zip(files, reasons, strict=True))
        delete = " ".join(str(f) for f in companions(files))
        super().__init__(
            f"corrupt or truncated part file(s): {listed}. Rerun with --repair to refit their "
            f"accounts (or delete them: rm {delete})"
        )


def companions(files: list[Path]) -> list[Path]:
    """The files of the parts ``files`` belong to: each part's summary and status file."""
    out: dict[Path, None] = {}
    for f in files:
        _, _, part = f.name.partition("-")
        for k in KINDS:
            out[f.with_name(f"{k}-{part}")] = None
    return [f for f in out if f.exists()]


class ResultStore:
    """Results of a batch run in ``out_dir`` (safe to share between processes)."""

    def __init__(self, out_dir: str | Path):
        self.out_dir = Path(out_dir)
        self.parts = make_dir(self.out_dir / "parts")

    def check(self, repair: bool = False) -> list[Path]:
        """Read every part; raise :class:`CorruptPartError` on those that cannot be read, or with
        ``repair`` delete them and their companions (their accounts are then fitted again).
        Returns the deleted files."""
        bad, reasons = [], []
        for kind in KINDS:
            for f in sorted(self.parts.glob(f"{kind}-*.parquet")):
                try:
                    pd.read_parquet(f)
                except Exception as err:  # pyarrow raises several types for a damaged file
                    bad.append(f)
                    reasons.append(str(err).splitlines()[0] if str(err) else type(err).__name__)
        if not bad:
            return []
        if not repair:
            raise CorruptPartError(bad, reasons)
        removed = companions(bad)
        for f in removed:
            f.unlink(missing_ok=True)
        return removed

    def write(self, name: str, status: pd.DataFrame, summary: pd.DataFrame) -> str:
        """Write one part (summary rows, then status rows); returns the part id."""
        digest = hashlib.sha256(
            pd.util.hash_pandas_object(status[KEY], index=False).to_numpy().tobytes()
        ).hexdigest()[:12]
        part = f"{name}-{digest}"
        if len(summary):
            write_parquet(summary, self.parts / f"summary-{part}.parquet")
        write_parquet(status, self.parts / f"status-{part}.parquet")
        return part

    def _read(self, kind: str) -> pd.DataFrame:
        files = sorted(self.parts.glob(f"{kind}-*.parquet"))
        if not files:
            return pd.DataFrame()
        return pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)

    def completed(self) -> set[tuple[str, str]]:
        """``(account, fingerprint)`` pairs that already have a status row."""
        status = self._read("status")
        if status.empty:
            return set()
        return set(zip(status["account"], status["fingerprint"], strict=True))

    def rows(self, keep: set[tuple[str, str]] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Status and summary rows written so far, one copy per account (retried work dropped),
        restricted to the ``(account, fingerprint)`` pairs in ``keep`` when given."""
        status = self._read("status")
        summary = self._read("summary")
        if not status.empty and keep is not None:
            pairs = pd.Series(list(zip(status["account"], status["fingerprint"], strict=True)))
            status = status[pairs.isin(keep).to_numpy()]
        if not status.empty:
            status = status.drop_duplicates(KEY, keep="first").sort_values("account")
            status = status.reset_index(drop=True)
        if not summary.empty:
            done = status[KEY] if not status.empty else pd.DataFrame(columns=KEY)
            summary = summary.merge(done, on=KEY, how="inner")
            summary = summary.drop_duplicates([*KEY, "level", "campaign", "adset"], keep="first")
            summary = summary.reset_index(drop=True)
        return status, summary

    def consolidate(
        self, keep: set[tuple[str, str]] | None = None
    ) -> tuple[pd.DataFrame, pd.DataFrame]:
        """One status row per account and the summary rows of those accounts (duplicates from
        retried work dropped); written as ``status.csv``, ``summary.csv`` and ``summary.parquet``.

        ``keep`` restricts the output to these ``(account, fingerprint)`` pairs (the current
        run's), so results of earlier runs on other data stay in ``parts/`` but not in the tables.
        """
        status, summary = self.rows(keep)
        write_csv(status, self.out_dir / "status.csv")
        write_csv(summary, self.out_dir / "summary.csv")
        if not summary.empty:
            write_parquet(summary, self.out_dir / "summary.parquet")
        return status, summary
