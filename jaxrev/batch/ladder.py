r"""Fitting one bucket through the fallback ladder: :func:`fit_bucket`.

Convergence per account. SVI runs in chunks of ``window`` steps; between chunks the host computes
each account's windowed relative ELBO change (as :func:`jaxrev.fit` does for one account),
freezes the accounts that converged and, once few are left, repacks the rest into a smaller
batch. Accounts that do not converge climb a fallback ladder:

1. more steps (``more_steps`` beyond ``max_steps``; status ``converged``, rung ``svi_more_steps``);
2. a full-rank Gaussian guide, vectorised over the remaining accounts (``fallback_fullrank``);
3. NUTS for that account alone (``fallback_nuts``);

and an account that still has no usable posterior gets ``failed: <reason>``. A non-finite loss in
one lane sends that account down the ladder; lanes are independent, so it never touches the others.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache, partial

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from numpyro.diagnostics import split_gelman_rubin

from jaxrev.batch.buckets import batch_cap, batch_size_for, pad_account, stack_lanes
from jaxrev.batch.plan import BucketResult, BucketSpec
from jaxrev.batch.rows import status_row, summary_rows
from jaxrev.batch.store import ResultStore
from jaxrev.compile_cache import register_cache, release_compiled_programs
from jaxrev.data import RevenueArrays
from jaxrev.inference.driver import run_nuts
from jaxrev.inference.options import NUTSOptions, SVIOptions
from jaxrev.inference.svi import (
    SVIRunState,
    WindowStats,
    elbo_plateau,
    program_options,
    svi_chunk,
    svi_converged,
    svi_init,
    svi_summary_stats,
)
from jaxrev.models.spec import REPORTED_ADSET_SITE, REPORTED_CAMPAIGN_SITE
from jaxrev.summaries import PROBS, describe_draws


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
def vectorised(fn: Callable, model: str, priors, options, *static) -> Callable:
    """``jit(vmap(fn(model, priors, options, *static, ...)))`` over a leading accounts axis."""
    return jax.jit(jax.vmap(partial(fn, model, priors, options, *static)))


register_cache(vectorised.cache_clear)


@jax.jit
def _gather(tree, index: jax.Array):
    """Select accounts (one compiled gather for the whole tree, per batch-size pair)."""
    return jax.tree.map(lambda x: x[index], tree)


def _device_put(tree, num_devices: int):
    """Shard the accounts axis across devices when there are several (no-op otherwise)."""
    if num_devices <= 1:
        return tree
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
    compiled = program_options(options)  # the stopping rule is the host's (below)
    init = vectorised(stage_init, model, priors, compiled, salt)
    chunk = vectorised(svi_chunk, model, priors, compiled)
    summarize = vectorised(svi_summary_stats, model, priors, compiled, num_draws)

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


def nuts_summaries(model, priors, options: NUTSOptions, arrays, key) -> tuple[dict, dict]:
    """The NUTS rung for one account: summaries of the reported sites, worst R-hat, divergences."""
    draws, stats, _ = run_nuts(model, priors, options, arrays, key, progress=False)
    out, rhat = {}, []
    sites = [REPORTED_ADSET_SITE] + (
        [REPORTED_CAMPAIGN_SITE] if REPORTED_CAMPAIGN_SITE in draws else []
    )
    masks = {REPORTED_ADSET_SITE: arrays.adset_mask, REPORTED_CAMPAIGN_SITE: arrays.campaign_mask}
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
                stats_i, info = nuts_summaries(model, priors, options.nuts_options, arrays, key)
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
            status_row(
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
    summary_table = summary_rows(done_items, done_stats, done_status)
    if store is not None:
        store.write(spec.bucket_id, status_table, summary_table)
    if earlier:
        status_table = pd.concat([earlier_status, status_table], ignore_index=True)
        summary_table = pd.concat([earlier_summary, summary_table], ignore_index=True)
    return BucketResult(spec.bucket_id, status_table, summary_table, time.perf_counter() - t0)
