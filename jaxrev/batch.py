r"""Thousands of accounts in one vectorised, resumable job: :func:`fit_accounts`.

Plan. Accounts are validated (one vectorised pass over a long table; a garbage account becomes a
``failed`` row and the batch goes on), padded to shape buckets (:mod:`jaxrev.buckets`) and
fitted bucket by bucket with SVI as ``jit(vmap(...))`` over the accounts axis — one compiled
program per bucket shape and batch size, never one per account.

Convergence per account. SVI runs in chunks of ``window`` steps; between chunks the host computes
each account's windowed relative ELBO change (as :func:`jaxrev.inference.fit` does for one
account), freezes the accounts that converged and, once few are left, repacks the rest into a
smaller batch. Accounts that do not converge climb a fallback ladder:

1. more steps (``more_steps`` beyond ``max_steps``; status ``converged``, rung ``svi_more_steps``);
2. a full-rank Gaussian guide, vectorised over the remaining accounts (``fallback_fullrank``);
3. NUTS for that account alone (``fallback_nuts``);

and an account that still has no usable posterior gets ``failed: <reason>``. A non-finite loss in
one lane sends that account down the ladder; lanes are independent, so it never touches the others.

Output. Each bucket's rows are written atomically to ``OUT/parts`` (:mod:`jaxrev.store`) under the
account and a fingerprint of model, options and data; a rerun skips finished accounts. Random
seeds come from a stable digest of the account id, so an account's result does not depend on the
bucket it landed in or on the run it was fitted in.

Scale-out. The unit of work is :func:`fit_bucket` on a picklable :class:`BucketSpec`; pass any
executor with ``submit`` (a ``dask.distributed.Client``) to run buckets elsewhere.
"""

from __future__ import annotations

import hashlib
import math
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from functools import lru_cache, partial
from pathlib import Path
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from numpyro.diagnostics import split_gelman_rubin
from numpyro.infer import Predictive

from jaxrev.buckets import (
    BucketShape,
    batch_cap,
    batch_size_for,
    bucket_shape,
    pad_account,
    plan_buckets,
    stack_lanes,
)
from jaxrev.compile_cache import CompileCounter, register_cache, release_compiled_programs
from jaxrev.data import (
    Columns,
    InvalidDataError,
    NoObservationsError,
    RevenueData,
    check_columns,
    check_table,
    read_table,
    rows_to_data,
    validate_rows,
)
from jaxrev.inference import (
    NUTSOptions,
    SVIOptions,
    SVIRunState,
    WindowStats,
    _prepared_svi,
    _program_options,
    elbo_plateau,
    fitted_params,
    run_nuts,
    svi_chunk,
    svi_converged,
    svi_init,
)
from jaxrev.model import RevenueArrays, get_model
from jaxrev.result import describe_draws
from jaxrev.store import ResultStore

PROBS = (0.025, 0.5, 0.975)


# --------------------------------------------------------------------------------------------
# Options, inputs, specs
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# Reading many accounts
# --------------------------------------------------------------------------------------------


def load_accounts(
    source,
    columns: Columns,
    model: str,
    priors,
    options: BatchOptions,
    on_invalid: Literal["raise", "drop"] = "raise",
) -> tuple[list[AccountInput], pd.DataFrame]:
    """Validate every account of a long table (one vectorised pass over all rows), a folder of
    per-account files or a mapping of account -> DataFrame. Returns the fittable accounts and a
    ``failed: invalid data: ...`` (or ``failed: no observations: ...`` for an account without a
    single conversion) status row for each of the others."""
    accounts, failed = [], []

    def add(account: str, make: Callable[[], RevenueData], raw: Callable[[], pd.DataFrame]):
        try:
            data = make()
        except (InvalidDataError, NoObservationsError) as err:
            rows = raw()
            kind = "no observations" if isinstance(err, NoObservationsError) else "invalid data"
            failed.append(
                _status_row(
                    account,
                    f"failed: {kind}: {str(err).splitlines()[0]}",
                    fingerprint(model, priors, options, None, raw=rows),
                    error=str(err),
                    num_obs=len(rows),
                )
            )
            return
        fp = fingerprint(model, priors, options, data)
        accounts.append(AccountInput(account, data, fp, account_seed(account, options.seed)))

    single = columns._replace(account=None)
    if isinstance(source, Mapping):
        for account, frame in source.items():
            table = frame.reset_index(drop=True)
            add(
                str(account),
                partial(validate_rows, table, single, f"<{account}>", False,
                        on_invalid=on_invalid, account=str(account)),
                lambda table=table: table,
            )  # fmt: skip
        return accounts, pd.DataFrame(failed)
    path = None if isinstance(source, pd.DataFrame) else Path(source)
    if path is not None and path.is_dir():
        files = sorted(
            p for p in path.iterdir() if p.suffix.lower() in (".csv", ".tsv", ".parquet", ".pq")
        )
        if not files:
            raise FileNotFoundError(f"{path}: no .csv, .tsv or .parquet files")
        for file in files:
            table, name, is_csv = read_table(file)
            add(
                file.stem,
                partial(validate_rows, table, single, name, is_csv,
                        on_invalid=on_invalid, account=file.stem),
                lambda table=table: table,
            )  # fmt: skip
        return accounts, pd.DataFrame(failed)

    table, name, is_csv = read_table(source)
    if columns.account is None:
        raise ValueError("a long table needs columns.account (the account column)")
    check_columns(table, columns, name)
    ids = table[columns.account].astype("string").str.strip()
    missing = (ids.isna() | (ids == "")).to_numpy(dtype=bool)
    if missing.any():
        rows = (np.flatnonzero(missing) + 1).tolist()
        raise ValueError(f"{name}: rows {rows[:10]} have no account id ({columns.account!r})")
    checked = check_table(table, columns, is_csv, group_by=columns.account)
    account_of = checked.ids[columns.account]
    positions = pd.Series(np.arange(len(account_of))).groupby(account_of, sort=True).indices
    problems = dict(
        tuple(checked.problems.groupby(account_of[checked.problem_position], sort=False))
    )
    empty = checked.problems.iloc[:0]
    for account, where in positions.items():
        add(
            str(account),
            partial(rows_to_data, checked, single, name, positions=where,
                    problems=problems.get(account, empty), on_invalid=on_invalid,
                    account=str(account)),
            partial(table.iloc.__getitem__, where),
        )  # fmt: skip
    return accounts, pd.DataFrame(failed)


# --------------------------------------------------------------------------------------------
# Vectorised SVI pieces (compiled once per model/priors/options and batch shape)
# --------------------------------------------------------------------------------------------


def _describe(draws: jax.Array, probs: tuple[float, ...]) -> jax.Array:
    """(draw, item) -> (item, 2 + len(probs)): mean, sd (ddof 1), quantiles."""
    stats = [draws.mean(0), draws.std(0, ddof=1)]
    stats += [jnp.quantile(draws, p, axis=0) for p in probs]
    return jnp.stack(stats, axis=-1)


def svi_summary_stats(
    model: str, priors, options: SVIOptions, num_draws: int, key: jax.Array, state, arrays
) -> dict[str, jax.Array]:
    """Posterior mean, sd and quantiles of ``adset_mean`` (and ``campaign_mean``) from a fitted
    SVI state, computed where the state lives (pure; vmapped over accounts by the batch)."""
    svi = _prepared_svi(model, priors, options, arrays)
    params = fitted_params(svi, state)
    k_guide, k_pred = jax.random.split(key)
    latents = svi.guide.sample_posterior(k_guide, params, arrays, sample_shape=(num_draws,))
    sites = ["adset_mean"] + (["campaign_mean"] if get_model(model).has_campaign_level else [])
    values = Predictive(get_model(model).program, posterior_samples=latents, return_sites=sites)(
        k_pred, arrays._replace(log_revenue=None), priors=priors
    )
    return {site: _describe(values[site], PROBS) for site in sites}


def stage_init(
    model: str, priors, options: SVIOptions, salt: int, seed: jax.Array, arrays: RevenueArrays
) -> tuple[SVIRunState, jax.Array]:
    """Initial SVI state of one account and the key its summaries draw with (pure).

    The account's key is ``key(seed)`` (folded with ``salt`` for later rungs), split into the
    init and draw keys exactly as :func:`jaxrev.fit` splits its seed; seeds travel as plain
    integers, so no typed keys are stacked on the host.
    """
    key = jax.random.key(seed)
    key = key if salt == 0 else jax.random.fold_in(key, salt)
    init_key, draw_key = jax.random.split(key)
    return svi_init(model, priors, options, init_key, arrays), draw_key


@lru_cache(maxsize=64)
def _vectorised(fn: Callable, model: str, priors, options, *static) -> Callable:
    """``jit(vmap(fn(model, priors, options, *static, ...)))`` over a leading accounts axis."""
    return jax.jit(jax.vmap(partial(fn, model, priors, options, *static)))


register_cache(_vectorised.cache_clear)


@jax.jit
def _gather(tree, index: jax.Array):
    """Select accounts (one compiled gather for the whole tree, per batch-size pair)."""
    return jax.tree.map(lambda x: x[index], tree)


def _device_put(tree, num_devices: int):
    """Shard the accounts axis across devices when there are several (no-op otherwise)."""
    if num_devices <= 1:
        return tree
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    mesh = Mesh(np.array(jax.devices()[:num_devices]), ("accounts",))
    return jax.device_put(tree, NamedSharding(mesh, PartitionSpec("accounts")))


@dataclass
class _Lane:
    """An account's progress through one SVI stage."""

    index: int
    arrays: RevenueArrays
    seed: int
    steps: int = 0
    window: WindowStats | None = None
    rel_change: float = math.inf
    converged: bool = False
    nonfinite: bool = False
    stats: dict[str, np.ndarray] | None = None  # summaries, once converged


def _svi_stage(
    model: str,
    priors,
    options: SVIOptions,
    num_draws: int,
    lanes: list[_Lane],
    salt: int,
    step_limit: int,
    cap: int,
    repack_factor: int,
    num_devices: int,
) -> None:
    """Run vectorised SVI on ``lanes`` until each converges, fails or reaches ``step_limit``.

    Lanes are updated in place (``converged``, ``steps``, ``stats``...). The batch starts at the
    smallest compiled size that holds every lane; a finished lane's slot keeps running as a ghost
    until the live lanes fit in 1/``repack_factor`` of the slots, then they move to a batch that
    much smaller (a fixed ladder B, B/f, B/f^2..., so a bucket shape compiles a handful of
    programs, however many lanes finish when). When lanes converge, the summaries are computed
    for the whole current batch and kept for those lanes. Each lane's trajectory is independent
    of its slot and of repacking.
    """
    compiled = _program_options(options)  # the stopping rule is the host's (below)
    init = _vectorised(stage_init, model, priors, compiled, salt)
    chunk = _vectorised(svi_chunk, model, priors, compiled)
    summarize = _vectorised(svi_summary_stats, model, priors, compiled, num_draws)

    size = batch_size_for(len(lanes), cap, num_devices)
    fill = size - len(lanes)
    arrays = stack_lanes([lane.arrays for lane in lanes], size)
    seeds = np.array([lane.seed for lane in lanes] + [lanes[0].seed] * fill, np.uint32)
    state, draw_keys = init(*_device_put((seeds, arrays), num_devices))
    arrays = _device_put(arrays, num_devices)
    active = dict(enumerate(lanes))  # slot -> lane
    while active:
        state, losses = chunk(state, arrays)
        losses = np.asarray(losses)
        converged = []
        for slot, lane in list(active.items()):
            lane.steps += options.window
            loss = losses[slot]
            if not np.all(np.isfinite(loss)):
                lane.nonfinite = True
                del active[slot]
                continue
            last = WindowStats.of(loss)
            lane.rel_change, plateau = elbo_plateau(
                lane.window, last, options.rtol, options.noise_z
            )
            lane.window = last
            if svi_converged(options, lane.steps, plateau):
                lane.converged = True
                converged.append((slot, lane))
                del active[slot]
            elif lane.steps >= step_limit:
                del active[slot]
        if converged:
            stats = jax.device_get(summarize(draw_keys, state, arrays))
            for slot, lane in converged:
                lane.stats = {site: value[slot] for site, value in stats.items()}
        smaller = size // repack_factor
        if active and len(active) <= smaller and smaller % num_devices == 0:
            slots = list(active)
            index = np.array(slots + [slots[0]] * (smaller - len(slots)))
            state, draw_keys, arrays = _gather((state, draw_keys, arrays), index)
            active = dict(enumerate(active.values()))
            size = smaller


# --------------------------------------------------------------------------------------------
# NUTS rung: one account at a time
# --------------------------------------------------------------------------------------------


def _nuts_summaries(model, priors, options: NUTSOptions, arrays, key) -> tuple[dict, dict]:
    draws, stats, _ = run_nuts(model, priors, options, arrays, key, progress=False)
    out, rhat = {}, []
    sites = ["adset_mean"] + (["campaign_mean"] if "campaign_mean" in draws else [])
    masks = {"adset_mean": arrays.adset_mask, "campaign_mean": arrays.campaign_mask}
    for site in sites:
        x = draws[site]
        out[site] = describe_draws(x.reshape(-1, x.shape[-1]), PROBS)
        real = np.asarray(masks[site])
        if x.shape[0] > 1:
            rhat.append(np.asarray(split_gelman_rubin(x[..., real])).max())
    info = {
        "nuts_max_rhat": float(max(rhat)) if rhat else math.nan,
        "nuts_divergences": int(stats["diverging"].sum()),
    }
    return out, info


# --------------------------------------------------------------------------------------------
# Rows
# --------------------------------------------------------------------------------------------


def _status_row(account: str, status: str, fp: str, **extra) -> dict[str, Any]:
    row = {
        "account": account,
        "status": status,
        "rung": extra.pop("rung", "none"),
        "steps": 0,
        "final_elbo": math.nan,
        "rel_elbo_change": math.nan,
        "num_obs": 0,
        "num_adsets": 0,
        "num_campaigns": 0,
        "zero_conversion_rows": 0,
        "invalid_rows": 0,
        "nuts_max_rhat": math.nan,
        "nuts_divergences": -1,
        "bucket": "",
        "seconds": math.nan,
        "error": "",
        "fingerprint": fp,
    }
    row.update(extra)
    return row


def _summary_rows(
    items: list[AccountInput], stats: list[dict[str, np.ndarray]], statuses: list[str]
) -> pd.DataFrame:
    """The tidy summary rows (as :meth:`RevenueFit.summary`, plus ``account``, ``status`` and
    ``fingerprint``) of many accounts, built column by column in one DataFrame."""
    names = ["mean", "sd"] + [f"q{100 * p:g}" for p in PROBS]
    columns: dict[str, list] = {
        k: []
        for k in ["account", "level", "campaign", "adset", "n_obs", "conversions", "revenue",
                  "raw_mean", *names, "status", "fingerprint"]
    }  # fmt: skip
    for item, stat, status in zip(items, stats, statuses, strict=True):
        data = item.data
        tables = [("adset", data.adsets, stat["adset_mean"][: data.num_adsets])]
        if "campaign_mean" in stat:
            tables.insert(
                0, ("campaign", data.campaigns, stat["campaign_mean"][: data.num_campaigns])
            )
        for level, table, values in tables:
            k = len(table)
            columns["account"].append(np.full(k, item.account, dtype=object))
            columns["level"].append(np.full(k, level, dtype=object))
            columns["campaign"].append(table["campaign"].to_numpy(dtype=object))
            adset = table["adset"].to_numpy(dtype=object) if level == "adset" else np.full(k, None)
            columns["adset"].append(adset)
            for name in ("n_obs", "conversions", "revenue", "raw_mean"):
                columns[name].append(table[name].to_numpy())
            for j, name in enumerate(names):
                columns[name].append(values[:, j])
            columns["status"].append(np.full(k, status, dtype=object))
            columns["fingerprint"].append(np.full(k, item.fingerprint, dtype=object))
    if not columns["account"]:
        return pd.DataFrame()
    return pd.DataFrame({k: np.concatenate(v) for k, v in columns.items()})


# --------------------------------------------------------------------------------------------
# The unit of work
# --------------------------------------------------------------------------------------------


def fit_bucket(
    spec: BucketSpec, on_progress: Callable[[int, int], None] | None = None
) -> BucketResult:
    """Fit the accounts of one bucket through the whole ladder; write and return their rows.

    Pure and idempotent: accounts already in ``spec.out_dir`` are skipped, and writing the same
    rows twice leaves one copy after consolidation. ``on_progress(done, fallbacks)`` is called
    as accounts finish (in-process runs only; it is not part of the picklable spec).
    """
    t0 = time.perf_counter()
    release_compiled_programs()  # a long run meets many shapes (see jaxrev.compile_cache)
    options, model, priors = spec.options, spec.model, spec.priors
    store = ResultStore(spec.out_dir) if spec.out_dir else None
    done = store.completed() if store else set()
    items = [a for a in spec.accounts if (a.account, a.fingerprint) not in done]
    report = on_progress or (lambda done, fallbacks: None)
    # Accounts of this bucket already in the store (a retried bucket whose worker died after
    # writing): their stored rows are part of this bucket's result, so a retry returns what the
    # first attempt would have.
    earlier = {(a.account, a.fingerprint) for a in spec.accounts} & done
    earlier_status, earlier_summary = (
        store.rows(earlier) if earlier else (pd.DataFrame(), pd.DataFrame())
    )
    if earlier:
        report(len(earlier), 0)
    if not items:
        return BucketResult(spec.bucket_id, earlier_status, earlier_summary, 0.0)

    num_devices = jax.local_device_count()
    cap = max(batch_cap(spec.shape, options.max_batch, options.max_batch_obs), num_devices)
    padded = [pad_account(item.data.arrays, spec.shape) for item in items]
    dtype = jnp.result_type(float)
    padded = [
        a._replace(
            log_revenue=np.asarray(a.log_revenue, dtype),
            conversions=np.asarray(a.conversions, dtype),
            time=np.asarray(a.time, dtype),
        )
        for a in padded
    ]
    results: dict[int, dict] = {}
    outcome: dict[int, dict] = {i: {} for i in range(len(items))}

    def svi_rung(indices: list[int], svi: SVIOptions, step_limit: int, salt: int):
        """One vectorised SVI rung over ``indices``; returns the converged lanes."""
        t_stage = time.perf_counter()
        lanes = [_Lane(i, padded[i], items[i].seed) for i in indices]
        _svi_stage(
            model, priors, svi, options.num_draws, lanes, salt, step_limit, cap,
            options.repack_factor, num_devices,
        )  # fmt: skip
        share = (time.perf_counter() - t_stage) / len(lanes)
        for lane in lanes:
            info = outcome[lane.index]
            info["steps"] = info.get("steps", 0) + lane.steps
            info["seconds"] = info.get("seconds", 0.0) + share
            info["final_elbo"] = -lane.window.mean if lane.window else math.nan
            info["rel_elbo_change"] = lane.rel_change
            if lane.converged:
                results[lane.index] = lane.stats
            elif lane.nonfinite:
                info["error"] = f"non-finite ELBO ({svi.guide} SVI)"
            else:
                info["error"] = (
                    f"{svi.guide} SVI did not converge in {lane.steps} steps "
                    f"(relative ELBO change {lane.rel_change:.1e})"
                )
        return [lane for lane in lanes if lane.converged]

    # Rung 1 (+ more steps): the configured guide, vectorised.
    svi = options.svi
    for lane in svi_rung(list(range(len(items))), svi, svi.max_steps + options.more_steps, 0):
        rung = "svi" if lane.steps <= svi.max_steps else "svi_more_steps"
        outcome[lane.index].update(status="converged", rung=rung)
    report(len(results), 0)
    pending = [i for i in range(len(items)) if i not in results]

    # Rung 2: full-rank guide for the rest, vectorised.
    if pending and options.fullrank:
        fullrank = options.fullrank_options
        ok = svi_rung(pending, fullrank, fullrank.max_steps, 1)
        for lane in ok:
            outcome[lane.index].update(status="fallback_fullrank", rung="fullrank")
        report(len(ok), len(ok))
        pending = [i for i in pending if i not in results]

    # Rung 3: NUTS, one account at a time.
    for i in list(pending) if options.nuts else []:
        release_compiled_programs()
        t_stage = time.perf_counter()
        arrays = jax.tree.map(jnp.asarray, padded[i])
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                key = jax.random.fold_in(jax.random.key(items[i].seed), 2)
                stats_i, info = _nuts_summaries(model, priors, options.nuts_options, arrays, key)
        except Exception as err:
            outcome[i]["error"] = f"NUTS failed: {err}"
            continue
        if not all(np.all(np.isfinite(v)) for v in stats_i.values()):
            outcome[i]["error"] = "NUTS produced non-finite draws"
            continue
        outcome[i].update(info, status="fallback_nuts", rung="nuts")
        outcome[i]["seconds"] = outcome[i].get("seconds", 0.0) + time.perf_counter() - t_stage
        results[i] = stats_i
        report(1, 1)
        pending.remove(i)

    # Rows.
    status_rows, done_items, done_stats, done_status = [], [], [], []
    for i, item in enumerate(items):
        info = dict(outcome[i])
        status = info.pop("status", None)
        if status is None:
            status = f"failed: {info.get('error', 'no usable posterior')}"
            report(1, 0)
        d = item.data
        status_rows.append(
            _status_row(
                item.account,
                status,
                item.fingerprint,
                num_obs=d.num_observations,
                num_adsets=d.num_adsets,
                num_campaigns=d.num_campaigns,
                zero_conversion_rows=d.report.zero_conversion_rows,
                invalid_rows=d.report.rows_invalid,
                bucket=spec.bucket_id,
                **info,
            )
        )
        if i in results:
            done_items.append(item)
            done_stats.append(results[i])
            done_status.append(status)
    status_table = pd.DataFrame(status_rows)
    summary_table = _summary_rows(done_items, done_stats, done_status)
    if store is not None:
        store.write(spec.bucket_id, status_table, summary_table)
    if earlier:
        status_table = pd.concat([earlier_status, status_table], ignore_index=True)
        summary_table = pd.concat([earlier_summary, summary_table], ignore_index=True)
    return BucketResult(spec.bucket_id, status_table, summary_table, time.perf_counter() - t0)


# --------------------------------------------------------------------------------------------
# The driver
# --------------------------------------------------------------------------------------------


def make_specs(
    accounts: list[AccountInput], model: str, priors, options: BatchOptions, out_dir
) -> list[BucketSpec]:
    """Group accounts into buckets (see :func:`jaxrev.buckets.plan_buckets`)."""
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


def _as_completed(futures):
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
    model: str = "multilevel",
    priors=None,
    options: BatchOptions | None = None,
    executor=None,
    progress: bool | None = None,
    on_invalid: Literal["raise", "drop"] = "raise",
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

    Returns:
        A :class:`BatchResult`.

    Example:
        >>> result = fit_accounts("accounts.parquet", out_dir="nightly/")  # doctest: +SKIP
        >>> result.status["status"].value_counts()  # doctest: +SKIP
    """
    import sys

    t0 = time.perf_counter()
    columns = columns or Columns(account="account")
    if columns.account is None and not isinstance(data, Mapping) and not Path(str(data)).is_dir():
        columns = columns._replace(account="account")
    options = options or BatchOptions()
    spec_model = get_model(model)
    priors = spec_model.default_priors if priors is None else priors
    progress = sys.stderr.isatty() if progress is None else progress

    accounts, invalid = load_accounts(data, columns, model, priors, options, on_invalid)
    store = ResultStore(out_dir) if out_dir is not None else None
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

    from tqdm import tqdm

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
        if executor is None:
            for spec in specs:
                results.append(_fit_bucket_safely(spec, on_progress))
        else:
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
        import json

        (Path(out_dir) / "run.json").write_text(json.dumps(report, indent=2, default=str))
    return BatchResult(status=status, summary=summary, report=report)


def _fit_bucket_safely(spec: BucketSpec, on_progress) -> BucketResult:
    """Run a bucket in-process; if it raises, retry its accounts one by one, so one poisonous
    account cannot take its neighbours down."""
    try:
        return fit_bucket(spec, on_progress)
    except Exception:
        if len(spec.accounts) == 1:
            item = spec.accounts[0]
            import traceback

            row = _status_row(
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


__all__ = [
    "AccountInput",
    "BatchOptions",
    "BatchResult",
    "BucketResult",
    "BucketSpec",
    "account_seed",
    "fingerprint",
    "fit_accounts",
    "fit_bucket",
    "load_accounts",
    "make_specs",
    "svi_summary_stats",
]
