"""Thousands of accounts in one vectorised, resumable job: :func:`fit_accounts`.

Modules: :mod:`~jaxrev.batch.plan` (options, units of work, seeds, fingerprints, buckets of
accounts), :mod:`~jaxrev.batch.buckets` (padding to shape buckets),
:mod:`~jaxrev.batch.accounts` (reading and validating many accounts), :mod:`~jaxrev.batch.ladder`
(one bucket through vectorised SVI and its fallbacks), :mod:`~jaxrev.batch.rows` (status and
summary rows), :mod:`~jaxrev.batch.store` (atomic, resumable output, corrupt parts found or
repaired), :mod:`~jaxrev.batch.lock` (one run per output folder) and
:mod:`~jaxrev.batch.driver` (:func:`fit_accounts`).
"""

from jaxrev.batch.accounts import load_accounts
from jaxrev.batch.driver import fit_accounts
from jaxrev.batch.ladder import fit_bucket, stage_init, vectorised
from jaxrev.batch.plan import (
    AccountInput,
    BatchOptions,
    BatchResult,
    BucketResult,
    BucketSpec,
    account_seed,
    fingerprint,
    make_specs,
)
from jaxrev.batch.store import ResultStore

__all__ = [
    "AccountInput",
    "BatchOptions",
    "BatchResult",
    "BucketResult",
    "BucketSpec",
    "ResultStore",
    "account_seed",
    "fingerprint",
    "fit_accounts",
    "fit_bucket",
    "load_accounts",
    "make_specs",
    "stage_init",
    "vectorised",
]
