"""The fitting driver: host loops over the pure programs of :mod:`~jaxrev.inference.svi`,
:mod:`~jaxrev.inference.nuts` and :mod:`~jaxrev.inference.map`, and the entry point :func:`fit`.

**SVI** runs compiled chunks of ``window`` steps until the windowed ELBO criterion holds (see
:mod:`jaxrev.inference.svi`), up to ``max_steps`` (not converged, with a warning). **NUTS** runs
``num_chains`` chains of ``num_warmup + num_samples`` in chunks, for progress, and reports
split-R-hat (rank-normalised), bulk and tail ESS and divergences over the model's checked sites.
**MAP** reports the mode as a single draw, without uncertainty.
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from numpyro.infer.util import constrain_fn, unconstrain_fn

from jaxrev.compile_cache import release_compiled_programs
from jaxrev.data import Columns, RevenueArrays, RevenueData, load_revenue_data
from jaxrev.inference.map import map_solve
from jaxrev.inference.nuts import (
    NUTSDraws,
    constrain_draws,
    init_chain,
    jitter_starts,
    pick_chain_method,
    predict_log_revenue,
    run_chains,
    sample_chain,
)
from jaxrev.inference.options import (
    GuideKind,
    MAPOptions,
    NUTSOptions,
    Options,
    SVIOptions,
    resolve_options,
)
from jaxrev.inference.posterior import with_predictions
from jaxrev.inference.svi import (
    WindowStats,
    elbo_plateau,
    program_options,
    svi_chunk_jit,
    svi_converged,
    svi_draws_jit,
    svi_init_jit,
    svi_params_jit,
)
from jaxrev.models import DEFAULT_MODEL, ModelSpec, get_model
from jaxrev.result import FitDiagnostics, Message, RevenueFit


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
    compiled = program_options(options)
    state = svi_init_jit(model, priors, compiled, k_init, arrays)
    losses: list[np.ndarray] = []
    steps, rel, converged, nonfinite = 0, math.inf, False, False
    previous: WindowStats | None = None
    with _progress(options.max_steps, f"SVI ({options.guide})", progress) as bar:
        while steps < options.max_steps:
            state, chunk = svi_chunk_jit(model, priors, compiled, state, arrays)
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
    params = svi_params_jit(model, priors, compiled, state, arrays)
    draws = svi_draws_jit(model, priors, compiled, k_draw, params, arrays, num_draws)
    draws = {k: np.asarray(v)[None] for k, v in draws.items()}  # one "chain"
    loss_trace = np.concatenate(losses)
    messages = []
    if nonfinite:
        messages.append(Message("svi_nonfinite", f"SVI loss became non-finite after {steps} steps"))
    elif not converged:
        messages.append(
            Message(
                "svi_not_converged",
                f"SVI did not converge in {steps} steps (relative ELBO change {rel:.2e}, above "
                f"rtol {options.rtol:g} and the noise); raise max_steps (CLI: --max-steps) or "
                "check the data",
            )
        )
    diagnostics = FitDiagnostics(
        method=f"svi:{options.guide}",
        converged=converged,
        num_steps=steps,
        seconds=time.perf_counter() - t0,
        fit_seconds=t_fit,
        entries=tuple(messages),
        details={
            "final_elbo": -float(np.mean(loss_trace[-options.window :])),
            "relative_elbo_change": rel,
            "rtol": options.rtol,
        },
        loss_trace=loss_trace,
    )
    return draws, diagnostics


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
    spec = get_model(model)
    program = spec.program
    kwargs = {"priors": priors}
    method = pick_chain_method(options)
    if method == "parallel" and jax.local_device_count() < options.num_chains:
        raise ValueError(
            f"chain_method='parallel' needs {options.num_chains} devices, "
            f"{jax.local_device_count()} available"
        )
    start = unconstrain_fn(program, (arrays,), kwargs, spec.initial_values(arrays, priors))
    k_jitter, k_chains, k_pred = jax.random.split(key, 3)
    z0 = jitter_starts(k_jitter, start, options.num_chains)
    chain_keys = jax.random.split(k_chains, options.num_chains)
    static = (model, priors, options)

    state = run_chains(init_chain, method, static, (chain_keys, z0), arrays)
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
                    state, _ = run_chains(sample_chain, method, (*static, length), state, arrays)
                else:
                    state, out = run_chains(sample_chain, method, (*static, length), state, arrays)
                    draws.append(jax.device_get(out))
                done += length
                bar.update(length)
                bar.set_postfix(phase=phase)
    t_fit = time.perf_counter() - t0
    out = jax.tree.map(lambda *x: np.concatenate(x, axis=1), *draws)  # (chain, draw, ...)
    chains, num = options.num_chains, options.num_samples
    flat_z = jax.tree.map(lambda x: x.reshape(chains * num, *x.shape[2:]), out.z)
    constrained = constrain_draws(model, priors, flat_z, arrays)
    latent = {k: v for k, v in constrained.items() if k in flat_z}
    values = predict_log_revenue(model, priors, k_pred, latent, arrays)
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
            Message(
                "map_not_converged",
                f"MAP stopped after {int(solution.num_steps)} steps with gradient norm "
                f"{float(solution.gradient_norm):.2e}; raise max_steps (CLI: --max-steps)",
            )
        )
    pooling = get_model(model).pooling_sites
    at_zero = [k for k in pooling if k in point and point[k] < 1e-3]
    if at_zero:
        text = f"MAP collapsed {', '.join(at_zero)} to ~0 (full pooling at the mode)"
        messages.append(Message("full_pooling", text, warn=False))
    messages.append(
        Message("point_estimate", "MAP is a point estimate: intervals are not reported", warn=False)
    )
    diagnostics = FitDiagnostics(
        method="map",
        converged=converged,
        num_steps=int(solution.num_steps),
        seconds=time.perf_counter() - t0,
        fit_seconds=t_fit,
        entries=tuple(messages),
        details={
            "log_density": -float(solution.value),
            "gradient_norm": float(solution.gradient_norm),
        },
    )
    return draws, diagnostics


def fit(
    data: RevenueData | pd.DataFrame | str | Path,
    method: Literal["svi", "nuts", "map"] = "svi",
    *,
    model: str = DEFAULT_MODEL,
    priors: Any | None = None,
    guide: GuideKind | None = None,
    options: Options | None = None,
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
        model: a name in :data:`jaxrev.models.MODELS` (default: the seed's ``"multilevel"``).
        priors: an instance of the model's priors class; default: its spec's default priors.
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
    options = resolve_options(method, options, guide, option_overrides)
    if spec.needs_time and "time" not in data.observations.columns:
        raise ValueError(
            f"model {model!r} needs a time column (Columns(time=...), CLI: --time-col)"
        )
    if progress is None:
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
