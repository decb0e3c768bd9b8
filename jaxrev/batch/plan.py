"""Planning a batch run: its options, the picklable unit of work (:class:`BucketSpec`), stable
per-account seeds and fingerprints, and the grouping of accounts into shape buckets."""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field, replace
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from jaxrev.batch.buckets import BucketShape, bucket_shape, plan_buckets
from jaxrev.data import RevenueData
from jaxrev.inference import NUTSOptions, SVIOptions


@dataclass(frozen=True)
class BatchOptions:
    """Settings of a batch run.

    Attributes:
        svi: SVI settings of the first rung (mean-field by default; ``guide`` must be meanfield
            or lowrank here, full-rank being the second rung). Shorter than :func:`jaxrev.fit`'s
            (learning rate decayed over 1,500 steps, averaged over 500 more): against Stan NUTS
            on the batch benchmark's 30 accounts, the median |Δ ad-set mean| / Stan sd was
            0.103 with this schedule, 0.109 with 3,000 + 1,000 and 0.093 with 1,000 + 500 —
            the mean-field guide's own bias dominates, not the schedule (on 60 other accounts,
            8,000 steps gave 0.087).
        more_steps: extra SVI steps allowed beyond ``svi.max_steps`` (first fallback).
        fullrank: try a full-rank guide for accounts SVI could not fit.
        fullrank_svi: SVI settings of that rung (default: ``svi`` with the full-rank guide).
        nuts: try NUTS (one account at a time) for accounts still without a result.
        nuts_options: NUTS settings of the last rung.
        num_draws: draws from each guide for the summaries.
        max_batch: most accounts per compiled batch.
        max_batch_obs: most padded observations per batch (accounts x padded rows): bounds device
            memory; large accounts get smaller batches.
        min_obs, min_adsets, min_campaigns: smallest padded sizes (fewer, fuller buckets).
        repack_factor: once the running accounts fit in 1/repack_factor of the batch, move them
            to a batch that much smaller (sizes B, B/f, B/f^2... so few programs are compiled).
        seed: base seed; each account's seed is a digest of (seed, account id).
    """

    svi: SVIOptions = SVIOptions(max_steps=12_000, decay_steps=1_500, average_steps=500)
    more_steps: int = 12_000
    fullrank: bool = True
    fullrank_svi: SVIOptions | None = None
    nuts: bool = True
    nuts_options: NUTSOptions = NUTSOptions(num_warmup=500, num_samples=500, num_chains=4)
    num_draws: int = 1000
    max_batch: int = 256
    max_batch_obs: int = 1 << 21
    min_obs: int = 16
    min_adsets: int = 8
    min_campaigns: int = 4
    repack_factor: int = 8
    seed: int = 0

    def __post_init__(self):
        if self.svi.guide == "fullrank":
            raise ValueError("the first rung's guide must be meanfield or lowrank")
        if self.fullrank_svi is not None and self.fullrank_svi.guide != "fullrank":
            raise ValueError("fullrank_svi must use the full-rank guide")

    @property
    def fullrank_options(self) -> SVIOptions:
        return self.fullrank_svi or replace(self.svi, guide="fullrank")


class AccountInput(NamedTuple):
    """One validated account, ready to fit."""

    account: str
    data: RevenueData
    fingerprint: str
    seed: int


class BucketSpec(NamedTuple):
    """A unit of work: accounts of one bucket shape and everything needed to fit them (picklable).
    ``out_dir``: where to write the rows (None: only return them)."""

    bucket_id: str
    shape: BucketShape
    accounts: tuple[AccountInput, ...]
    model: str
    priors: Any
    options: BatchOptions
    out_dir: str | None = None


class BucketResult(NamedTuple):
    """Rows of one bucket: one status row per account and the summary rows."""

    bucket_id: str
    status: pd.DataFrame
    summary: pd.DataFrame
    seconds: float


@dataclass
class BatchResult:
    """The outcome of :func:`fit_accounts`: ``status`` (one row per account), ``summary`` (per
    account, campaign and ad set), and ``report`` (counts, throughput, compilations)."""

    status: pd.DataFrame
    summary: pd.DataFrame
    report: dict[str, Any] = field(default_factory=dict)


def account_seed(account: str, seed: int = 0) -> int:
    """A stable 31-bit seed from the account id (not Python's per-process salted ``hash``)."""
    digest = hashlib.blake2b(f"{seed}\x00{account}".encode(), digest_size=4).digest()
    return int.from_bytes(digest, "little") & 0x7FFFFFFF


def fingerprint(
    model: str, priors, options: BatchOptions, data: RevenueData | None, raw=None
) -> str:
    """Digest of what determines an account's result: model, priors, options and its data."""
    h = hashlib.sha256()
    h.update(repr((model, priors, asdict(options))).encode())
    if data is not None:
        for x in data.arrays:
            h.update(np.ascontiguousarray(np.asarray(x)).tobytes())
        h.update("\x00".join(map(str, data.adsets["adset"])).encode())
        h.update("\x00".join(map(str, data.campaigns["campaign"])).encode())
    if raw is not None:
        h.update(pd.util.hash_pandas_object(raw.astype(str), index=False).to_numpy().tobytes())
    return h.hexdigest()[:20]


def make_specs(
    accounts: list[AccountInput], model: str, priors, options: BatchOptions, out_dir
) -> list[BucketSpec]:
    """Group accounts into buckets (see :func:`jaxrev.batch.buckets.plan_buckets`)."""
    shapes = [
        bucket_shape(a.data.arrays, options.min_obs, options.min_adsets, options.min_campaigns)
        for a in accounts
    ]
    sizes = [a.data.num_observations for a in accounts]
    plan = plan_buckets(shapes, sizes, options.max_batch, options.max_batch_obs)
    specs, counter = [], {}
    for shape, members in plan:
        k = counter[shape] = counter.get(shape, -1) + 1
        specs.append(
            BucketSpec(
                bucket_id=f"{shape}-{k:04d}",
                shape=shape,
                accounts=tuple(accounts[i] for i in members),
                model=model,
                priors=priors,
                options=options,
                out_dir=None if out_dir is None else str(out_dir),
            )
        )
    return specs
