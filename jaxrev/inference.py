r"""Fitting the revenue models: SVI (mean-field, full-rank, low-rank guides), NUTS and MAP.

One entry point, :func:`fit`, returns a :class:`~jaxrev.result.RevenueFit`. Underneath, each
method is a small set of pure functions of ``(key, arrays)`` whose settings are hashable and
static, so a second fit of an account of the same shape reuses the compiled program, and the SVI
step can be ``vmap``-ped over a batch of padded accounts.

**SVI.** Adam with a learning rate that decays exponentially from ``learning_rate`` to
``final_learning_rate`` over ``decay_steps`` and then stays there; the reported guide parameters
are their running mean over the steps after ``decay_steps`` (Polyak-Ruppert averaging). Steps
run in compiled chunks of ``window`` steps; after each chunk the host compares the mean loss
(negative ELBO) of the last window with the one before. With $\bar L_k$ and $s_k^2$ the mean
and variance of window $k$'s $w$ losses, the fit has converged once the learning rate has
decayed, the parameters have been averaged over at least ``average_steps`` steps, and

$$|\bar L_k - \bar L_{k-1}| \le \max\big(\texttt{rtol}\cdot\max(|\bar L_k|, 1),\;
  z\,\sqrt{(s_k^2 + s_{k-1}^2)/w}\big),$$

that is, once the windowed relative change is below ``rtol`` or no larger than the Monte Carlo
noise of the single-sample ELBO (``noise_z`` standard errors; without this, a small account whose
ELBO is ~30 in magnitude, with noise ~0.1 per window, would only pass ``rtol=1e-4`` by chance).
A drift larger than the noise keeps it running, up to ``max_steps`` (not converged, with a
warning).

**NUTS.** NumPyro's NUTS with ``num_chains`` chains of ``num_warmup + num_samples``; reports
split-R-hat (rank-normalised), bulk and tail ESS and divergences.

**MAP.** L-BFGS on the unconstrained parameters, maximising the log joint density of the
constrained parameters (no Jacobian, as Stan's ``optimizing``). For multilevel models the mode
sits at full pooling; the seed's warning applies, and MAP reports no uncertainty.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace
from functools import lru_cache, partial
from pathlib import Path
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pandas as pd
from numpyro.infer import SVI, Predictive, Trace_ELBO
from numpyro.infer.autoguide import (
    AutoLowRankMultivariateNormal,
    AutoMultivariateNormal,
    AutoNormal,
)
from numpyro.infer.hmc import hmc
from numpyro.infer.initialization import init_to_value
from numpyro.infer.util import constrain_fn, log_density, potential_energy, unconstrain_fn
from numpyro.optim import optax_to_numpyro

from jaxrev.compile_cache import register_cache, release_compiled_programs
from jaxrev.data import Columns, RevenueData, load_revenue_data
from jaxrev.model import ModelSpec, RevenueArrays, get_model
from jaxrev.result import FitDiagnostics, RevenueFit

GuideKind = Literal["meanfield", "fullrank", "lowrank"]


# --------------------------------------------------------------------------------------------
# Options (hashable: they are static arguments of compiled functions)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SVIOptions:
    """Settings of SVI. ``guide``: ``"meanfield"`` (Stan ADVI's meanfield), ``"fullrank"`` or
    ``"lowrank"`` (rank ``rank``, default $\\lceil\\sqrt{d}\\rceil$)."""

    guide: GuideKind = "meanfield"
    max_steps: int = 30_000
    learning_rate: float = 0.05
    final_learning_rate: float = 0.001
    decay_steps: int = 6_000
    window: int = 500
    rtol: float = 1e-4
    noise_z: float = 2.0
    average_steps: int = 2_000
    num_particles: int = 1
    init_scale: float = 0.05
    rank: int | None = None

    def __post_init__(self):
        if self.guide not in ("meanfield", "fullrank", "lowrank"):
            raise ValueError(f"guide must be meanfield, fullrank or lowrank, got {self.guide!r}")
        if self.window < 10 or self.max_steps < self.window:
            raise ValueError("need window >= 10 and max_steps >= window")


@dataclass(frozen=True)
class NUTSOptions:
    """Settings of NUTS. ``chain_method="auto"`` runs chains in parallel when there are enough
    devices and vectorised (in lockstep, one program) otherwise."""

    num_warmup: int = 1000
    num_samples: int = 1000
    num_chains: int = 4
    target_accept_prob: float = 0.8
    max_tree_depth: int = 10
    chain_method: Literal["auto", "sequential", "parallel", "vectorized"] = "auto"


@dataclass(frozen=True)
class MAPOptions:
    """Settings of MAP (L-BFGS): stop when the gradient norm is below ``gtol`` or the objective
    changes by less than ``ftol`` (relative; at least a few float epsilons) in a step. The second
    rule matters: a multilevel model's mode is at zero pooling scale, which the unconstrained
    parameters only approach (their log goes to minus infinity) while the density levels off."""

    max_steps: int = 5_000
    gtol: float = 1e-5
    ftol: float = 1e-9


# --------------------------------------------------------------------------------------------
# Initial values from the data (robust starts: the seed's "custom initialization")
# --------------------------------------------------------------------------------------------


def initial_values(model: str, arrays: RevenueArrays, priors) -> dict[str, jax.Array]:
    r"""Starting values on the constrained scale, from the data.

    The account location $\lambda$ starts at the mean of $\log(r_i/n_i)$ (clipped inside its
    bounds), $\sigma$ at 1, pooling scales at their prior mean 0.05, effects at 0. Works on traced
    arrays (inside ``jit``/``vmap``) and ignores masked observations.
    """
    w = arrays.obs_mask.astype(arrays.conversions.dtype)
    per_conversion = arrays.log_revenue - jnp.log(arrays.conversions)
    overall = jnp.sum(w * per_conversion) / jnp.maximum(jnp.sum(w), 1.0)
    dtype = arrays.conversions.dtype
    if model == "no_pooling":
        num = jax.ops.segment_sum(w * per_conversion, arrays.adset, arrays.num_adsets)
        den = jax.ops.segment_sum(w, arrays.adset, arrays.num_adsets)
        theta = jnp.where(den > 0, num / jnp.maximum(den, 1.0), overall)
        if priors.theta_bounds is not None:
            lo, hi = priors.theta_bounds
            theta = jnp.clip(theta, lo + 0.01 * (hi - lo), hi - 0.01 * (hi - lo))
        sigma = jnp.ones(arrays.num_adsets, dtype)
        if priors.sigma_bounds is not None:
            sigma = jnp.clip(sigma, *priors.sigma_bounds)
        return {"adset_mu": theta, "adset_sigma": sigma}
    span = priors.account_mu_high - priors.account_mu_low
    values = {
        "account_mu": jnp.clip(
            overall, priors.account_mu_low + 0.01 * span, priors.account_mu_high - 0.01 * span
        ),
        "account_mu_sd": jnp.asarray(0.05, dtype),
        "campaign_mu_z": jnp.zeros(arrays.num_campaigns, dtype),
        "campaign_mu_sd": jnp.asarray(0.05, dtype),
        "adset_mu_z": jnp.zeros(arrays.num_adsets, dtype),
        "revenue_sigma": jnp.clip(jnp.asarray(1.0, dtype), priors.sigma_low, priors.sigma_high),
    }
    if model == "hier_sigma":  # every spread starts at sigma, barely spread
        values |= {
            "campaign_sigma_sd": jnp.asarray(0.1, dtype),
            "adset_sigma_sd": jnp.asarray(0.1, dtype),
            "campaign_sigma_z": jnp.zeros(arrays.num_campaigns, dtype),
            "adset_sigma_z": jnp.zeros(arrays.num_adsets, dtype),
        }
    if model == "student_t" and priors.df is None:
        values["df_minus_one"] = jnp.asarray(9.0, dtype)
    if model == "local_level":  # a flat level
        values |= {
            "drift_sd": jnp.asarray(0.5 * priors.drift_sd_scale, dtype),
            "level_z": jnp.zeros(priors.num_knots - 1, dtype),
        }
    return values


# --------------------------------------------------------------------------------------------
# SVI: pure pieces (jit/vmap friendly)
# --------------------------------------------------------------------------------------------


def learning_rate_schedule(options: SVIOptions) -> optax.Schedule:
    """Exponential decay from ``learning_rate`` to ``final_learning_rate`` over ``decay_steps``."""
    ratio = options.final_learning_rate / options.learning_rate
    return optax.exponential_decay(
        options.learning_rate,
        transition_steps=options.decay_steps,
        decay_rate=ratio,
        end_value=options.final_learning_rate,
    )


def make_svi(model: str, priors, options: SVIOptions, arrays: RevenueArrays) -> SVI:
    """A fresh :class:`numpyro.infer.SVI` (and guide): build it inside any function you ``vmap``."""
    program = get_model(model).program
    init = init_to_value(values=initial_values(model, arrays, priors))
    if options.guide == "meanfield":
        guide = AutoNormal(program, init_loc_fn=init, init_scale=options.init_scale)
    elif options.guide == "fullrank":
        guide = AutoMultivariateNormal(program, init_loc_fn=init, init_scale=options.init_scale)
    else:
        guide = AutoLowRankMultivariateNormal(
            program, init_loc_fn=init, init_scale=options.init_scale, rank=options.rank
        )
    optimizer = optax_to_numpyro(optax.adam(learning_rate_schedule(options)))
    elbo = Trace_ELBO(num_particles=options.num_particles)
    return SVI(program, guide, optimizer, elbo, priors=priors)


class SVIRunState(NamedTuple):
    """NumPyro's SVI state plus the running mean of the guide's (constrained) parameters over
    the steps after ``decay_steps`` (Polyak-Ruppert averaging)."""

    svi: Any
    mean_params: dict
    num_averaged: jax.Array


class SVIChunk(NamedTuple):
    """State after a chunk of SVI steps and the per-step losses (negative ELBO)."""

    state: SVIRunState
    losses: jax.Array


def svi_init(
    model: str, priors, options: SVIOptions, key: jax.Array, arrays: RevenueArrays
) -> SVIRunState:
    """Initial SVI state (pure; ``jit`` with ``model, priors, options`` static)."""
    svi = make_svi(model, priors, options, arrays)
    state = svi.init(key, arrays)
    return SVIRunState(state, svi.get_params(state), jnp.zeros((), jnp.int32))


def _prepared_svi(model: str, priors, options: SVIOptions, arrays: RevenueArrays) -> SVI:
    """A fresh SVI whose guide and parameter transforms are set up for these shapes (NumPyro
    does that in ``init``; under ``jit`` the unused initial state is compiled away)."""
    svi = make_svi(model, priors, options, arrays)
    svi.init(jax.random.key(0), arrays)
    return svi


def _svi_step(svi: SVI, options: SVIOptions, run: SVIRunState, arrays: RevenueArrays):
    r"""One SVI step, then fold the new parameters into the running mean once the learning rate
    has decayed. With one Monte Carlo sample per step the last iterate jitters around the
    optimum; its mean over the final phase does not (measured on an 8-ad-set account: the
    last iterate's median distance to NUTS means varied 0.07-0.49 posterior sd across seeds,
    the averaged one 0.21-0.24)."""
    state, loss = svi.update(run.svi, arrays)
    averaging = state.optim_state[0] > options.decay_steps
    count = run.num_averaged + averaging.astype(jnp.int32)
    weight = jnp.where(averaging, 1.0 / jnp.maximum(count, 1), 0.0)
    mean = jax.tree.map(
        lambda m, x: m + weight.astype(m.dtype) * (x - m), run.mean_params, svi.get_params(state)
    )
    return SVIRunState(state, mean, count), loss


def fitted_params(svi: SVI, run: SVIRunState) -> dict:
    """The guide's parameters to report: the running mean once averaging has started."""
    last = svi.get_params(run.svi)
    return jax.tree.map(lambda m, x: jnp.where(run.num_averaged > 0, m, x), run.mean_params, last)


def svi_chunk(
    model: str, priors, options: SVIOptions, state: SVIRunState, arrays: RevenueArrays
) -> SVIChunk:
    """``options.window`` SVI steps in one ``lax.scan`` (pure)."""
    svi = _prepared_svi(model, priors, options, arrays)

    def step(state, _):
        return _svi_step(svi, options, state, arrays)

    state, losses = jax.lax.scan(step, state, None, length=options.window)
    return SVIChunk(state, losses)


def with_predictions(
    model: str, priors, key: jax.Array, latents: dict, arrays: RevenueArrays
) -> dict[str, jax.Array]:
    """Latent draws plus the deterministic sites and a replicated ``log_revenue`` (posterior
    predictive) per draw (pure)."""
    predictive = Predictive(get_model(model).program, posterior_samples=latents)
    return {**latents, **predictive(key, arrays._replace(log_revenue=None), priors=priors)}


def _guide_draws(svi: SVI, model, priors, key, params, arrays, num_draws) -> dict:
    k_guide, k_pred = jax.random.split(key)
    latents = svi.guide.sample_posterior(k_guide, params, arrays, sample_shape=(num_draws,))
    return with_predictions(model, priors, k_pred, latents, arrays)


def svi_draws(
    model: str,
    priors,
    options: SVIOptions,
    key: jax.Array,
    params,
    arrays: RevenueArrays,
    num_draws: int,
) -> dict[str, jax.Array]:
    """Draws of every site from the fitted guide, with deterministic sites and the posterior
    predictive ``log_revenue`` (pure)."""
    svi = _prepared_svi(model, priors, options, arrays)
    return _guide_draws(svi, model, priors, key, params, arrays, num_draws)


def _program_options(options: SVIOptions) -> SVIOptions:
    """``options`` as the compiled SVI programs see them: the fields that only the host's
    stopping rule reads (``max_steps``, ``rtol``, ``noise_z``, ``average_steps``) set to fixed
    values. Options are static arguments, so fits that differ only in when they stop share one
    compiled program instead of compiling the same one again."""
    return replace(options, max_steps=options.window, rtol=0.0, noise_z=0.0, average_steps=0)


_svi_init_jit = jax.jit(svi_init, static_argnums=(0, 1, 2))
_svi_chunk_jit = jax.jit(svi_chunk, static_argnums=(0, 1, 2))
_svi_draws_jit = jax.jit(svi_draws, static_argnums=(0, 1, 2, 6))


def svi_params(
    model: str, priors, options: SVIOptions, state: SVIRunState, arrays: RevenueArrays
) -> dict:
    """The guide's fitted parameters (constrained; averaged, see :func:`fitted_params`)."""
    return fitted_params(_prepared_svi(model, priors, options, arrays), state)


_svi_params_jit = jax.jit(svi_params, static_argnums=(0, 1, 2))


def svi_fit_fixed(
    model: str,
    priors,
    options: SVIOptions,
    key: jax.Array,
    arrays: RevenueArrays,
    num_steps: int,
    num_draws: int,
) -> tuple[dict[str, jax.Array], jax.Array]:
    """SVI for exactly ``num_steps`` steps, then ``num_draws`` posterior draws (pure).

    No host round-trips, so it ``vmap``-s over a leading accounts axis of ``(key, arrays)``
    (accounts padded to one shape, see :func:`jaxrev.data.pad_observations`). Returns the draws
    (see :func:`svi_draws`) and the per-step losses.
    """
    k_init, k_draw = jax.random.split(key)
    svi = make_svi(model, priors, options, arrays)
    state = svi.init(k_init, arrays)
    run = SVIRunState(state, svi.get_params(state), jnp.zeros((), jnp.int32))

    def step(run, _):
        return _svi_step(svi, options, run, arrays)

    run, losses = jax.lax.scan(step, run, None, length=num_steps)
    params = fitted_params(svi, run)
    return _guide_draws(svi, model, priors, k_draw, params, arrays, num_draws), losses


class WindowStats(NamedTuple):
    """Mean and variance of one window of SVI losses."""

    mean: float
    var: float
    size: int

    @classmethod
    def of(cls, losses: np.ndarray) -> WindowStats:
        return cls(float(np.mean(losses)), float(np.var(losses)), len(losses))


def svi_converged(options: SVIOptions, steps: int, plateau: bool) -> bool:
    """The stopping rule: decayed, averaged over ``average_steps`` and on a plateau."""
    return plateau and steps >= options.decay_steps + options.average_steps


def elbo_plateau(
    previous: WindowStats | None, last: WindowStats, rtol: float, noise_z: float
) -> tuple[float, bool]:
    """Relative change between two windows' mean losses, and whether it is within ``rtol`` or
    within ``noise_z`` standard errors of the difference (see the module docstring)."""
    if previous is None:
        return math.inf, False
    diff = abs(last.mean - previous.mean)
    scale = max(abs(last.mean), 1.0)
    noise = math.sqrt(last.var / last.size + previous.var / previous.size)
    return diff / scale, diff <= max(rtol * scale, noise_z * noise)


def _progress(total: int, desc: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, disable=not enabled, leave=False, unit="step")


def run_svi(
    model: str,
    priors,
    options: SVIOptions,
    arrays: RevenueArrays,
    key: jax.Array,
    num_draws: int,
    progress: bool,
) -> tuple[dict[str, np.ndarray], FitDiagnostics]:
    """Fit with SVI until the windowed relative ELBO change is below ``rtol`` (host loop)."""
    t0 = time.perf_counter()
    k_init, k_draw = jax.random.split(key)
    compiled = _program_options(options)
    state = _svi_init_jit(model, priors, compiled, k_init, arrays)
    losses: list[np.ndarray] = []
    steps, rel, converged, nonfinite = 0, math.inf, False, False
    previous: WindowStats | None = None
    with _progress(options.max_steps, f"SVI ({options.guide})", progress) as bar:
        while steps < options.max_steps:
            state, chunk = _svi_chunk_jit(model, priors, compiled, state, arrays)
            chunk = np.asarray(chunk)
            losses.append(chunk)
            steps += options.window
            bar.update(options.window)
            if not np.all(np.isfinite(chunk)):
                nonfinite = True
                break
            last = WindowStats.of(chunk)
            rel, plateau = elbo_plateau(previous, last, options.rtol, options.noise_z)
            previous = last
            bar.set_postfix(loss=f"{last.mean:.4g}", rel_change=f"{rel:.2e}")
            if svi_converged(options, steps, plateau):
                converged = True
                break
    t_fit = time.perf_counter() - t0
    params = _svi_params_jit(model, priors, compiled, state, arrays)
    draws = _svi_draws_jit(model, priors, compiled, k_draw, params, arrays, num_draws)
    draws = {k: np.asarray(v)[None] for k, v in draws.items()}  # one "chain"
    loss_trace = np.concatenate(losses)
    messages = []
    if nonfinite:
        messages.append(f"SVI loss became non-finite after {steps} steps")
    elif not converged:
        messages.append(
            f"SVI did not converge in {steps} steps (relative ELBO change {rel:.2e}, above "
            f"rtol {options.rtol:g} and the noise); raise max_steps or check the data"
        )
    diagnostics = FitDiagnostics(
        method=f"svi:{options.guide}",
        converged=converged,
        num_steps=steps,
        seconds=time.perf_counter() - t0,
        fit_seconds=t_fit,
        messages=messages,
        details={
            "final_elbo": -float(np.mean(loss_trace[-options.window :])),
            "relative_elbo_change": rel,
            "rtol": options.rtol,
        },
        loss_trace=loss_trace,
    )
    return draws, diagnostics


# --------------------------------------------------------------------------------------------
# NUTS
# --------------------------------------------------------------------------------------------
#
# NumPyro's NUTS transition kernel (multinomial sampling, generalised U-turn, Stan-style windowed
# adaptation of the step size and diagonal mass matrix) driven by our own compiled loops. The
# ``MCMC`` driver costs ~0.5 ms per iteration on CPU on top of the kernel (measured: the same
# kernel in a bare ``lax.scan`` runs 4 chains of 2000 iterations of the 19-ad-set account in 2.3 s
# instead of 7.7 s), so we scan the kernel ourselves, in chunks for progress reporting.


class NUTSDraws(NamedTuple):
    """Per-iteration output of a sampling chunk: unconstrained draws and sampler statistics."""

    z: dict
    diverging: jax.Array
    num_steps: jax.Array
    accept_prob: jax.Array
    energy: jax.Array


def _nuts_kernels(model: str, priors, options: NUTSOptions, arrays: RevenueArrays, z):
    """A fresh NUTS kernel pair, initialised so that ``sample_kernel`` knows its settings
    (NumPyro keeps them in the pair's closure; under ``jit`` the unused init is compiled away)."""
    program = get_model(model).program

    def potential(params):
        return potential_energy(program, (arrays,), {"priors": priors}, params)

    init_kernel, sample_kernel = hmc(potential_fn=potential, algo="NUTS")

    def init(key):
        return init_kernel(
            z,
            num_warmup=options.num_warmup,
            target_accept_prob=options.target_accept_prob,
            max_tree_depth=options.max_tree_depth,
            rng_key=key,
        )

    return init, sample_kernel


def nuts_init(model: str, priors, options: NUTSOptions, key: jax.Array, arrays, z):
    """Initial NUTS state of one chain started at unconstrained ``z`` (pure)."""
    init, _ = _nuts_kernels(model, priors, options, arrays, z)
    return init(key)


def nuts_sample(model: str, priors, options: NUTSOptions, length: int, state, arrays):
    """``length`` sampling iterations of one chain, keeping every draw (pure)."""
    init, sample_kernel = _nuts_kernels(model, priors, options, arrays, state.z)
    init(state.rng_key)

    def step(state, _):
        state = sample_kernel(state)
        return state, NUTSDraws(
            state.z, state.diverging, state.num_steps, state.accept_prob, state.energy
        )

    return jax.lax.scan(step, state, None, length=length)


@lru_cache(maxsize=16)
def _chain_mapped(fn, chain_method: str, static: tuple):
    """``fn(*static, per_chain..., arrays)`` mapped over chains and compiled once per setting."""
    core = partial(fn, *static)
    if chain_method == "parallel":
        return jax.pmap(core, in_axes=(0, None))
    if chain_method == "vectorized":
        return jax.jit(jax.vmap(core, in_axes=(0, None)))
    return jax.jit(core)  # sequential: one chain per call


register_cache(_chain_mapped.cache_clear)


def _run_chains(fn, chain_method: str, static: tuple, per_chain, arrays):
    mapped = _chain_mapped(fn, chain_method, static)
    if chain_method != "sequential":
        return mapped(per_chain, arrays)
    num_chains = jax.tree.leaves(per_chain)[0].shape[0]
    outs = [mapped(jax.tree.map(lambda x, c=c: x[c], per_chain), arrays) for c in range(num_chains)]
    return jax.tree.map(lambda *x: jnp.stack(x), *outs)


def _chain_method(options: NUTSOptions) -> str:
    if options.chain_method != "auto":
        return options.chain_method
    if options.num_chains > 1 and jax.local_device_count() >= options.num_chains:
        return "parallel"
    # One device: chains in lockstep in one program (measured on a 2-core CPU, 19 ad sets,
    # 4 x 2000 iterations: vectorized 2.3 s, four sequential chains 6.0 s).
    return "vectorized"


def run_nuts(
    model: str,
    priors,
    options: NUTSOptions,
    arrays: RevenueArrays,
    key: jax.Array,
    progress: bool,
    chunk: int = 100,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], FitDiagnostics]:
    """Sample with NUTS; returns draws ``(chain, draw, ...)``, sample stats and diagnostics."""
    t0 = time.perf_counter()
    program = get_model(model).program
    kwargs = {"priors": priors}
    method = _chain_method(options)
    if method == "parallel" and jax.local_device_count() < options.num_chains:
        raise ValueError(
            f"chain_method='parallel' needs {options.num_chains} devices, "
            f"{jax.local_device_count()} available"
        )
    start = unconstrain_fn(program, (arrays,), kwargs, initial_values(model, arrays, priors))
    k_jitter, k_chains, k_pred = jax.random.split(key, 3)
    z0 = _jitter(k_jitter, start, options.num_chains)
    chain_keys = jax.random.split(k_chains, options.num_chains)
    static = (model, priors, options)

    state = _run_chains(_init_one, method, static, (chain_keys, z0), arrays)
    total = options.num_warmup + options.num_samples
    draws: list[NUTSDraws] = []
    with _progress(total, f"NUTS ({options.num_chains} chains, {method})", progress) as bar:
        for phase, count in (("warmup", options.num_warmup), ("sample", options.num_samples)):
            done = 0
            while done < count:
                length = min(chunk, count - done)
                if phase == "warmup":
                    # Warm-up runs the sampling program and drops its draws: the same kernel
                    # steps (adaptation is in the kernel's state), and one compiled program for
                    # both phases instead of two (compiling NumPyro's NUTS kernel is most of the
                    # time of a small fit).
                    state, _ = _run_chains(_sample_one, method, (*static, length), state, arrays)
                else:
                    state, out = _run_chains(_sample_one, method, (*static, length), state, arrays)
                    draws.append(jax.device_get(out))
                done += length
                bar.update(length)
                bar.set_postfix(phase=phase)
    t_fit = time.perf_counter() - t0
    out = jax.tree.map(lambda *x: np.concatenate(x, axis=1), *draws)  # (chain, draw, ...)
    chains, num = options.num_chains, options.num_samples
    flat_z = jax.tree.map(lambda x: x.reshape(chains * num, *x.shape[2:]), out.z)
    constrained = _constrain_draws(model, priors, flat_z, arrays)
    latent = {k: v for k, v in constrained.items() if k in flat_z}
    values = _predict_jit(model, priors, k_pred, latent, arrays)
    values = {**constrained, **values}
    samples = {k: np.asarray(v).reshape(chains, num, *np.shape(v)[1:]) for k, v in values.items()}
    stats = {
        "diverging": np.asarray(out.diverging),
        "n_steps": np.asarray(out.num_steps),
        "acceptance_rate": np.asarray(out.accept_prob),
        "energy": np.asarray(out.energy),
        "tree_depth": np.floor(np.log2(np.asarray(out.num_steps) + 1)).astype(int),
    }
    step_size = np.asarray(state.adapt_state.step_size)
    diagnostics = FitDiagnostics(
        method="nuts",
        converged=True,  # set from R-hat / ESS / divergences by the result object
        num_steps=total,
        seconds=time.perf_counter() - t0,
        fit_seconds=t_fit,
        details={
            "num_chains": chains,
            "chain_method": method,
            "step_size": [round(float(x), 5) for x in np.atleast_1d(step_size)],
            "mean_leapfrog_steps": float(stats["n_steps"].mean()),
        },
    )
    return samples, stats, diagnostics


def _init_one(model, priors, options, key_and_start, arrays):
    key, z = key_and_start
    return nuts_init(model, priors, options, key, arrays, z)


def _sample_one(model, priors, options, length, state, arrays):
    return nuts_sample(model, priors, options, length, state, arrays)


@partial(jax.jit, static_argnums=(0, 1))
def _constrain_draws(model: str, priors, flat_z: dict, arrays: RevenueArrays) -> dict:
    """Constrained values and deterministic sites for a batch of unconstrained draws."""
    program = get_model(model).program

    def one(z):
        return constrain_fn(program, (arrays,), {"priors": priors}, z, return_deterministic=True)

    return jax.vmap(one)(flat_z)


@partial(jax.jit, static_argnums=(0, 1))
def _predict_jit(model: str, priors, key: jax.Array, latent: dict, arrays: RevenueArrays):
    predictive = Predictive(
        get_model(model).program, posterior_samples=latent, return_sites=["log_revenue"]
    )
    return predictive(key, arrays._replace(log_revenue=None), priors=priors)


def _jitter(key: jax.Array, params: dict, num_chains: int) -> dict:
    """Per-chain starts: the data-driven start plus U(-0.5, 0.5) on the unconstrained scale."""
    keys = jax.random.split(key, len(params))
    return {
        name: value
        + jax.random.uniform(k, (num_chains, *jnp.shape(value)), minval=-0.5, maxval=0.5)
        for (name, value), k in zip(sorted(params.items()), keys, strict=True)
    }


# --------------------------------------------------------------------------------------------
# MAP
# --------------------------------------------------------------------------------------------


def map_objective(model: str, priors, arrays: RevenueArrays):
    """Negative log joint density of the constrained parameters, as a function of the
    unconstrained ones (no Jacobian: the mode of the posterior density itself)."""
    program = get_model(model).program

    def objective(unconstrained):
        params = constrain_fn(program, (arrays,), {"priors": priors}, unconstrained)
        return -log_density(program, (arrays,), {"priors": priors}, params)[0]

    return objective


class MAPSolution(NamedTuple):
    """L-BFGS result: unconstrained parameters, objective, gradient norm, steps, and whether a
    stopping rule (``gtol`` or ``ftol``) was met."""

    params: dict
    value: jax.Array
    gradient_norm: jax.Array
    num_steps: jax.Array
    converged: jax.Array


@partial(jax.jit, static_argnums=(0, 1, 2))
def map_solve(model: str, priors, options: MAPOptions, arrays: RevenueArrays) -> MAPSolution:
    """L-BFGS from the data-driven start (pure, jitted; never raises)."""
    program = get_model(model).program
    objective = map_objective(model, priors, arrays)
    kwargs = {"priors": priors}
    start = unconstrain_fn(program, (arrays,), kwargs, initial_values(model, arrays, priors))
    solver = optax.lbfgs()
    value_and_grad = optax.value_and_grad_from_state(objective)
    dtype = arrays.conversions.dtype
    ftol = max(options.ftol, 4 * float(jnp.finfo(dtype).eps))

    def cond(carry):
        return (carry[3] < options.max_steps) & ~carry[6]

    def body(carry):
        params, opt_state, previous, step, _, _, _ = carry
        value, grad = value_and_grad(params, state=opt_state)
        updates, opt_state = solver.update(
            grad, opt_state, params, value=value, grad=grad, value_fn=objective
        )
        params = optax.apply_updates(params, updates)
        gnorm = optax.tree.norm(grad)
        flat = jnp.abs(previous - value) <= ftol * jnp.maximum(1.0, jnp.abs(value))
        done = (gnorm <= options.gtol) | (flat & (step > 0))
        return params, opt_state, value, step + 1, gnorm, value, done

    inf = jnp.asarray(jnp.inf, dtype)
    init = (start, solver.init(start), inf, jnp.asarray(0), inf, inf, jnp.asarray(False))
    params, _, _, steps, gnorm, value, done = jax.lax.while_loop(cond, body, init)
    return MAPSolution(params, value, gnorm, steps, done)


def run_map(
    model: str, priors, options: MAPOptions, arrays: RevenueArrays, key: jax.Array
) -> tuple[dict[str, np.ndarray], FitDiagnostics]:
    """Find the posterior mode; returns it as a single draw (chain 1, draw 1) and diagnostics."""
    t0 = time.perf_counter()
    program = get_model(model).program
    solution = map_solve(model, priors, options, arrays)
    t_fit = time.perf_counter() - t0
    point = constrain_fn(program, (arrays,), {"priors": priors}, solution.params)
    latent = {k: jnp.asarray(v)[None] for k, v in point.items()}
    values = with_predictions(model, priors, key, latent, arrays)
    draws = {k: np.asarray(v)[None] for k, v in values.items()}  # (1 chain, 1 draw, ...)
    converged = bool(solution.converged) and bool(np.isfinite(float(solution.value)))
    messages = []
    if not converged:
        messages.append(
            f"MAP stopped after {int(solution.num_steps)} steps with gradient norm "
            f"{float(solution.gradient_norm):.2e}"
        )
    at_zero = [k for k in ("account_mu_sd", "campaign_mu_sd") if k in point and point[k] < 1e-3]
    if at_zero:
        messages.append(f"MAP collapsed {', '.join(at_zero)} to ~0 (full pooling at the mode)")
    messages.append("MAP is a point estimate: intervals are not reported")
    diagnostics = FitDiagnostics(
        method="map",
        converged=converged,
        num_steps=int(solution.num_steps),
        seconds=time.perf_counter() - t0,
        fit_seconds=t_fit,
        messages=messages,
        details={
            "log_density": -float(solution.value),
            "gradient_norm": float(solution.gradient_norm),
        },
    )
    return draws, diagnostics


# --------------------------------------------------------------------------------------------
# The entry point
# --------------------------------------------------------------------------------------------


def fit(
    data: RevenueData | pd.DataFrame | str | Path,
    method: Literal["svi", "nuts", "map"] = "svi",
    *,
    model: str = "multilevel",
    priors: NamedTuple | None = None,
    guide: GuideKind | None = None,
    options: SVIOptions | NUTSOptions | MAPOptions | None = None,
    num_draws: int = 1000,
    seed: int = 0,
    progress: bool | None = None,
    columns: Columns | None = None,
    account: str | None = None,
    on_invalid: Literal["raise", "drop"] = "raise",
    **option_overrides: Any,
) -> RevenueFit:
    """Fit a revenue model to one account.

    Args:
        data: validated :class:`RevenueData`, or a DataFrame / CSV / Parquet path (then read with
            ``columns``, ``account`` and ``on_invalid``; see :func:`load_revenue_data`).
        method: ``"svi"``, ``"nuts"`` or ``"map"``.
        model: ``"multilevel"`` (the seed's, default) or ``"no_pooling"``.
        priors: a ``MultilevelPriors`` / ``NoPoolingPriors``; default: the seed's.
        guide: SVI guide, ``"meanfield"`` (default), ``"fullrank"`` or ``"lowrank"``.
        options: :class:`SVIOptions`, :class:`NUTSOptions` or :class:`MAPOptions`.
        num_draws: posterior draws taken from an SVI guide.
        seed: random seed.
        progress: show progress bars (default: when stderr is a terminal).
        **option_overrides: fields of the method's options, e.g. ``num_chains=2``.

    Returns:
        A :class:`RevenueFit` (summary tables, draws, ``InferenceData``, diagnostics, plots).

    Example:
        >>> from jaxrev import fit
        >>> result = fit("hourly.csv", method="nuts", num_chains=4)  # doctest: +SKIP
        >>> result.summary()  # doctest: +SKIP
    """
    if not isinstance(data, RevenueData):
        data = load_revenue_data(data, columns, account=account, on_invalid=on_invalid)
    spec: ModelSpec = get_model(model)
    priors = spec.default_priors if priors is None else priors
    if type(priors) is not type(spec.default_priors):
        raise TypeError(f"model {model!r} takes {type(spec.default_priors).__name__} priors")
    options = _resolve_options(method, options, guide, option_overrides)
    if progress is None:
        import sys

        progress = sys.stderr.isatty()
    release_compiled_programs()  # before compiling more (see jaxrev.compile_cache)
    arrays = data.device_arrays()
    key = jax.random.key(seed)
    sample_stats = None
    if method == "svi":
        draws, diagnostics = run_svi(model, priors, options, arrays, key, num_draws, progress)
    elif method == "nuts":
        draws, sample_stats, diagnostics = run_nuts(model, priors, options, arrays, key, progress)
    else:
        draws, diagnostics = run_map(model, priors, options, arrays, key)
    result = RevenueFit(
        data=data,
        model=model,
        priors=priors,
        method=method,
        options=options,
        draws=draws,
        sample_stats=sample_stats,
        diagnostics=diagnostics,
    )
    result.check()
    return result


_OPTIONS = {"svi": SVIOptions, "nuts": NUTSOptions, "map": MAPOptions}


def _resolve_options(method, options, guide, overrides):
    if method not in _OPTIONS:
        raise ValueError(f"method must be one of {sorted(_OPTIONS)}, got {method!r}")
    cls = _OPTIONS[method]
    options = options if options is not None else cls()
    if not isinstance(options, cls):
        raise TypeError(f"method {method!r} takes {cls.__name__}, got {type(options).__name__}")
    if guide is not None:
        if method != "svi":
            raise ValueError("guide= applies to method='svi' only")
        overrides = {**overrides, "guide": guide}
    unknown = set(overrides) - set(cls.__dataclass_fields__)
    if unknown:
        raise TypeError(f"unknown {method} option(s) {sorted(unknown)}; see {cls.__name__}")
    return replace(options, **overrides) if overrides else options


__all__ = [
    "MAPOptions",
    "NUTSOptions",
    "SVIOptions",
    "SVIRunState",
    "WindowStats",
    "elbo_plateau",
    "fit",
    "fitted_params",
    "initial_values",
    "learning_rate_schedule",
    "make_svi",
    "map_objective",
    "run_map",
    "run_nuts",
    "run_svi",
    "svi_chunk",
    "svi_converged",
    "svi_draws",
    "svi_fit_fixed",
    "svi_init",
    "with_predictions",
]
