r"""Thousands of accounts in one vectorised, resumable job: :func:`fit_accounts`.

Plan. Accounts are validated (one vectorised pass over a long table; a garbage account becomes a
``failed`` row and the batch goes on), padded to shape buckets (:mod:`jaxrev.batch.buckets`) and
fitted bucket by bucket with SVI as ``jit(vmap(...))`` over the accounts axis — one compiled
program per bucket shape and batch size, never one per account.

Convergence per account and the fallback ladder: see :mod:`jaxrev.batch.ladder`.

Output. Each bucket's rows are written atomically to ``OUT/parts`` (:mod:`jaxrev.batch.store`)
under the account and a fingerprint of model, options and data; a rerun skips finished
accounts. Random seeds come from a stable digest of the account id, so an account's result does
not depend on the bucket it landed in or on the run it was fitted in.

Scale-out. The unit of work is :func:`fit_bucket` on a picklable :class:`BucketSpec`; pass any
executor with ``submit`` (a ``dask.distributed.Client``) to run buckets elsewhere.
"""

from __future__ import annotations

import sys
import time
import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import pandas as pd
from tqdm import tqdm

from jaxrev.batch.accounts import load_accounts
from jaxrev.batch.ladder import fit_bucket
from jaxrev.batch.lock import folder_lock
from jaxrev.batch.plan import BatchOptions, BatchResult, BucketResult, BucketSpec, make_specs
from jaxrev.batch.rows import status_row
from jaxrev.batch.store import ResultStore
from jaxrev.compile_cache import CompileCounter
from jaxrev.data import Columns
from jaxrev.files import write_json
from jaxrev.models import DEFAULT_MODEL, get_model


def _as_completed(futures):
    """Futures as they finish: Dask's ``as_completed`` for Dask futures, else the standard one."""
    try:
        from distributed import Future as DaskFuture
        from distributed import as_completed as dask_as_completed

        if futures and isinstance(futures[0], DaskFuture):
            yield from dask_as_completed(futures)
            return
    except ImportError:
        pass
    from concurrent.futures import as_completed

    yield from as_completed(futures)


def fit_accounts(
    data,
    *,
    out_dir: str | Path | None = None,
    columns: Columns | None = None,
    model: str = DEFAULT_MODEL,
    priors=None,
    options: BatchOptions | None = None,
    executor=None,
    progress: bool | None = None,
    on_invalid: Literal["raise", "drop"] = "raise",
    wait: bool = False,
    repair: bool = False,
    name: str | None = None,
) -> BatchResult:
    """Fit every account of ``data`` with SVI (and the fallback ladder).

    Args:
        data: a long table (DataFrame, CSV or Parquet) with an account column, a folder of
            per-account files (the file name is the account id), or a mapping of account id to
            DataFrame.
        out_dir: write results there incrementally and resume from them (recommended for long
            runs); ``status.csv`` and ``summary.csv`` are written at the end.
        columns: column names; ``account`` defaults to ``"account"``.
        model, priors: as :func:`jaxrev.fit`.
        options: :class:`BatchOptions`.
        executor: run buckets with ``executor.submit(fit_bucket, spec)`` (e.g. a
            ``dask.distributed.Client``); None runs them in this process.
        progress: show progress (default: when stderr is a terminal).
        on_invalid: per account, ``"raise"`` makes an account with invalid rows a ``failed`` row;
            ``"drop"`` drops the rows and fits the rest.
        wait: when another run holds ``out_dir``'s lock (:mod:`jaxrev.batch.lock`), wait for it
            instead of raising :class:`~jaxrev.batch.lock.FolderLockedError`.
        repair: delete part files that cannot be read and fit their accounts again (default:
            raise :class:`~jaxrev.batch.store.CorruptPartError`, which names them).
        name: what messages call a long table (e.g. ``bundled:NAME``; default: its path).

    On ``KeyboardInterrupt`` the accounts finished so far are consolidated into ``out_dir``
    (``status.csv``, ``summary.csv``, ``run.json`` with ``"interrupted": true``) and the
    interrupt is raised again; a rerun resumes.

    Returns:
        A :class:`BatchResult`.

    Example:
        >>> result = fit_accounts("accounts.parquet", out_dir="nightly/")  # doctest: +SKIP
        >>> result.status["status"].value_counts()  # doctest: +SKIP
    """
    args = (
        *(data, out_dir, columns, model, priors, options),
        *(executor, progress, on_invalid, repair, name),
    )
    if out_dir is None:
        return _fit_accounts(*args)
    with folder_lock(out_dir, wait=wait):
        return _fit_accounts(*args)


def _fit_accounts(
    data, out_dir, columns, model, priors, options, executor, progress, on_invalid, repair, name
) -> BatchResult:
    t0 = time.perf_counter()
    columns = columns or Columns(account="account")
    if columns.account is None and not isinstance(data, Mapping) and not Path(str(data)).is_dir():
        columns = columns._replace(account="account")
    options = options or BatchOptions()
    spec_model = get_model(model)
    priors = spec_model.default_priors if priors is None else priors
    if spec_model.needs_time and columns.time is None:
        raise ValueError(f"model {model!r} needs a time column (columns.time)")
    progress = sys.stderr.isatty() if progress is None else progress

    accounts, invalid = load_accounts(data, columns, model, priors, options, on_invalid, name)
    store = ResultStore(out_dir) if out_dir is not None else None
    if store is not None:
        store.check(repair)
    current = {(a.account, a.fingerprint) for a in accounts}
    if len(invalid):
        current |= set(zip(invalid["account"], invalid["fingerprint"], strict=True))
    done = store.completed() if store else set()
    todo = [a for a in accounts if (a.account, a.fingerprint) not in done]
    if len(invalid):
        pairs = zip(invalid["account"], invalid["fingerprint"], strict=True)
        is_new = [pair not in done for pair in pairs]
        fresh_invalid = invalid[is_new]
        if store is not None and len(fresh_invalid):
            store.write("invalid", fresh_invalid, pd.DataFrame())
    else:
        fresh_invalid = invalid
    specs = make_specs(todo, model, priors, options, out_dir)
    total = len(accounts) + len(invalid)
    skipped = total - len(todo) - len(fresh_invalid)  # finished in an earlier run

    results: list[BucketResult] = []
    with (
        CompileCounter() as compiles,
        tqdm(total=total, initial=0, desc="accounts", unit="acct", disable=not progress) as bar,
    ):
        fallbacks = 0

        def on_progress(done_now: int, fallbacks_now: int) -> None:
            nonlocal fallbacks
            fallbacks += fallbacks_now
            bar.update(done_now)
            bar.set_postfix(fallbacks=fallbacks)

        on_progress(skipped + len(fresh_invalid), 0)
        try:
            _run_buckets(specs, executor, results, on_progress)
        except KeyboardInterrupt:
            if store is not None:
                store.consolidate(keep=current)
                fitted = sum(len(r.status) for r in results)
                write_json(
                    Path(out_dir) / "run.json",
                    {"interrupted": True, "accounts": total, "fitted_now": fitted},
                )
            raise

    if store is not None:
        status, summary = store.consolidate(keep=current)
    else:
        status = pd.concat([invalid] + [r.status for r in results], ignore_index=True)
        summary = (
            pd.concat([r.summary for r in results], ignore_index=True)
            if results
            else pd.DataFrame()
        )
        status = status.sort_values("account").reset_index(drop=True) if len(status) else status
    elapsed = time.perf_counter() - t0
    fitted = sum(len(r.status) for r in results)
    real_obs = sum(a.data.num_observations for a in todo)
    slots = sum(s.shape.num_obs * len(s.accounts) for s in specs)
    report = {
        "accounts": total,
        "fitted_now": fitted,
        "skipped_done": skipped,
        "invalid": len(invalid),
        "buckets": len(specs),
        "status_counts": status["status"].str.split(":").str[0].value_counts().to_dict()
        if len(status)
        else {},
        "seconds": round(elapsed, 2),
        "accounts_per_second": round(fitted / elapsed, 3) if elapsed > 0 else None,
        "padding_efficiency": round(real_obs / slots, 4) if slots else None,
        "compilations": compiles.counts,
    }
    if store is not None:
        write_json(Path(out_dir) / "run.json", report)
    return BatchResult(status=status, summary=summary, report=report)


def _run_buckets(specs, executor, results: list[BucketResult], on_progress) -> None:
    """Fit the buckets in this process (one after another) or on ``executor``, appending each
    result to ``results`` as it arrives."""
    if executor is None:
        for spec in specs:
            results.append(_fit_bucket_safely(spec, on_progress))
        return
    futures = [executor.submit(fit_bucket, spec) for spec in specs]
    for future in _as_completed(futures):
        result = future.result()
        results.append(result)
        on_progress(
            len(result.status),
            int(result.status["status"].str.startswith("fallback").sum())
            if len(result.status)
            else 0,
        )


def _fit_bucket_safely(spec: BucketSpec, on_progress) -> BucketResult:
    """Run a bucket in-process; if it raises, retry its accounts one by one, so one poisonous
    account cannot take its neighbours down."""
    try:
        return fit_bucket(spec, on_progress)
    except Exception:
        if len(spec.accounts) == 1:
            item = spec.accounts[0]
            row = status_row(
                item.account,
                f"failed: {traceback.format_exc().splitlines()[-1]}",
                item.fingerprint,
                bucket=spec.bucket_id,
            )
            status = pd.DataFrame([row])
            if spec.out_dir:
                ResultStore(spec.out_dir).write(spec.bucket_id, status, pd.DataFrame())
            on_progress(1, 0)
            return BucketResult(spec.bucket_id, status, pd.DataFrame(), 0.0)
        parts = [
            _fit_bucket_safely(
                spec._replace(bucket_id=f"{spec.bucket_id}-{k}", accounts=(item,)), on_progress
            )
            for k, item in enumerate(spec.accounts)
        ]
        return BucketResult(
            spec.bucket_id,
            pd.concat([p.status for p in parts], ignore_index=True),
            pd.concat([p.summary for p in parts], ignore_index=True),
            sum(p.seconds for p in parts),
        )
