"""The Poisson dynamic factor model: Laplace-EM (structured, jitted) against the seed's dense
Hessian approach, statsmodels' DynamicFactorMQ on log1p counts, the static model and Stan (NUTS).

On panels simulated from the model (seed-like: 163 locations, skewed base rates, q = 3), with
15% of the observed cells held out at random:

* ``sizes``: m = 163 and N = 36 (the seed's size), 144, 576; and a sparse panel m = 1000, N = 36
  (most cells zero). Per method: compile time, time per EM iteration after compilation, iterations
  and time to convergence, mean Poisson log-likelihood per held-out cell, RMSE of log-rates (all
  cells) against the truth. Methods: ``laplace_em`` (this package; structured O(N q^3) E-step,
  per-iteration time through the jitted step and through the whole-loop ``while_loop``),
  ``dense`` (the same EM with a dense (Nq)x(Nq) Hessian: the seed's "inverting large matrices"),
  ``dfmq`` (statsmodels ``DynamicFactorMQ`` on log1p counts, factor AR(1), no idiosyncratic AR
  states so its state dimension is q like ours; predictions expm1 of the smoothed signal),
  ``static`` (q = 0: fixed location rates) and ``oracle`` (the true rates). ``select`` reports
  the q picked by held-out cells among 0..3 on the training cells alone.
* ``scaling``: time per iteration against N (36 ... 2304) and m (50 ... 2000).
* ``stan``: at the seed's size, NUTS (pystan, 4 x (1000 + 1000)) over f_{1:N} with the parameters
  fixed at the Laplace-EM fit, against the Laplace posterior (mean and sd of f and of log-rates per
  cell); and NUTS over every parameter (4 x (500 + 500)) as the reference for held-out
  log-likelihood and time.
* ``nuts``: this package's own full Bayes (``jaxssm.sample_full_posterior``: NumPyro NUTS over
  every parameter, the same model and priors as the Stan program, chains started at the
  Laplace-EM fit) at the seed's size with Stan's settings (4 x (500 + 500), centred and
  non-centred like Stan) and short single chains (1 x (200 + 200)) at every size: held-out
  log-likelihood with its paired difference against Laplace-EM, time, divergences, R-hat.

Usage (the ``bench`` extra: statsmodels and pystan)::

    python benchmarks/ssm_laplace_em.py                       # all sections (~15 minutes)
    python benchmarks/ssm_laplace_em.py --sections sizes,scaling
    python benchmarks/ssm_laplace_em.py --sections nuts       # no pystan needed (~10 minutes)
"""

from __future__ import annotations

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import argparse
import json
import math
import platform
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
HOLDOUT = 0.15


def simulate(seed: int, m: int, N: int, q: int, mean_count: float, loading_scale: float):
    """A seed-like panel: base log-rates spread with sd 1.5 (a few large locations, many small)."""
    from jaxssm import random_params, simulate_panel

    params = random_params(seed, m, q, mean_count=mean_count, loading_scale=loading_scale)
    rng = np.random.default_rng(seed + 1)
    params = params._replace(mu=np.log(mean_count) + rng.normal(0, 1.5, m) - 1.125)
    sim = simulate_panel(seed + 2, params, N)
    heldout = np.random.default_rng(seed + 3).uniform(size=(N, m)) < HOLDOUT
    return sim, heldout


def poisson_loglik(x, rate):
    from scipy.special import gammaln

    rate = np.maximum(rate, 1e-12)
    return x * np.log(rate) - rate - gammaln(x + 1)


def timed(fn, *args, repeat: int = 1, **kwargs):
    import jax

    best = math.inf
    out = None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn(*args, **kwargs)
        jax.block_until_ready(out)
        best = min(best, time.perf_counter() - t0)
    return out, best


def per_iteration_step(panel, params, f, prior, options, iterations: int) -> float:
    """Seconds per jitted EM step called from Python (what the default fit loop pays)."""
    import jax

    from jaxssm.em import em_step

    out = em_step(panel, params, f, prior, options=options)  # compile
    jax.block_until_ready(out)
    t0 = time.perf_counter()
    for _ in range(iterations):
        step = em_step(panel, params, f, prior, options=options)
        params, f, prior = step.params, step.f, step.prior
    jax.block_until_ready(params)
    return (time.perf_counter() - t0) / iterations


def run_laplace_em(train, heldout, sim, q: int, dense_iterations: int) -> dict:
    """jaxssm at one size: whole-loop fit, per-iteration times, held-out and RMSE; the dense
    reference per iteration."""
    import jax

    from jaxssm import EMOptions, expected_rates, fit_laplace_em, predictive_log_likelihood
    from jaxssm.fit import initial_params, make_prior
    from jaxssm.params import Priors, make_panel

    panel = make_panel(train)
    t0 = time.perf_counter()
    fit = fit_laplace_em(panel, q, loop="jax", check=False)
    jax.block_until_ready(fit.params)
    first = time.perf_counter() - t0
    fit, steady = timed(fit_laplace_em, panel, q, loop="jax", check=False)
    x = sim.counts
    cell = np.asarray(predictive_log_likelihood(fit.params, fit.posterior, x, heldout))[heldout]
    cell_pu = np.asarray(
        predictive_log_likelihood(
            fit.params, fit.posterior, x, heldout, parameter_cov=fit.parameter_covariance()
        )
    )[heldout]
    rates = np.asarray(expected_rates(fit.params, fit.posterior))
    plain = fit_laplace_em(
        panel, q, loop="jax", check=False, priors=Priors(loadings="fixed"),
        options=EMOptions(accelerate="none"),
    )  # fmt: skip
    fast_fixed = fit_laplace_em(panel, q, loop="jax", check=False, priors=Priors(loadings="fixed"))
    x = sim.counts
    held_fixed = float(fast_fixed.log_predictive(x, heldout)[heldout].mean())
    row = {
        "compile_s": round(first - steady, 2),
        "to_convergence_s": round(steady, 3),
        "iterations": int(fit.num_iterations),
        "em_maps": int(fit.evaluations),
        "em_maps_plain_fixed_prior": int(plain.evaluations),
        "em_maps_squarem_fixed_prior": int(fast_fixed.evaluations),
        "heldout_fixed_prior": held_fixed,
        "status": fit.status,
        "per_iteration_ms_whole_loop": round(1e3 * steady / fit.evaluations, 3),
        "heldout_loglik": float(cell.mean()),
        "heldout_loglik_parameter_uncertainty": float(cell_pu.mean()),
        "rmse_log_rate": float(np.sqrt(np.mean((np.log(rates) - sim.log_rate) ** 2))),
    }
    params, f = initial_params(panel, q)
    prior = make_prior(panel, Priors(), q)
    row["per_iteration_ms_step"] = round(
        1e3 * per_iteration_step(panel, params, f, prior, EMOptions(), 30), 3
    )
    if dense_iterations:
        dense = EMOptions(dense_reference=True)
        t0 = time.perf_counter()
        jax.block_until_ready(per_iteration_step(panel, params, f, prior, dense, 1))
        row["dense_per_iteration_ms"] = round(
            1e3 * per_iteration_step(panel, params, f, prior, dense, dense_iterations), 2
        )
        row["dense_speed_ratio"] = round(
            row["dense_per_iteration_ms"] / row["per_iteration_ms_step"], 1
        )
    return row, fit


def run_static(train, heldout, sim) -> dict:
    from jaxssm import expected_rates, fit_laplace_em, predictive_log_likelihood

    fit = fit_laplace_em(train, 0)
    cov = fit.parameter_covariance()
    cell = np.asarray(predictive_log_likelihood(fit.params, fit.posterior, sim.counts, heldout))
    cell_pu = np.asarray(
        predictive_log_likelihood(fit.params, fit.posterior, sim.counts, heldout,
                                  parameter_cov=cov)
    )  # fmt: skip
    rates = np.asarray(expected_rates(fit.params, fit.posterior))
    return {
        "heldout_loglik": float(cell[heldout].mean()),
        "heldout_loglik_parameter_uncertainty": float(cell_pu[heldout].mean()),
        "rmse_log_rate": float(np.sqrt(np.mean((np.log(rates) - sim.log_rate) ** 2))),
    }


def run_dfmq(train, heldout, sim, q: int, iterations: int, maxiter: int) -> dict:
    """statsmodels DynamicFactorMQ on log1p counts (EM), factor AR(1), no idiosyncratic AR."""
    import pandas as pd
    from statsmodels.tsa.statespace.dynamic_factor_mq import DynamicFactorMQ

    N, m = train.shape
    endog = pd.DataFrame(
        np.log1p(train),
        index=pd.period_range("2000-01", periods=N, freq="M"),
        columns=[f"loc{k}" for k in range(m)],
    )
    # DFMQ needs observations and variation in every series (all-zero locations are constant)
    keep = (endog.notna().sum() >= 2) & (endog.nunique() >= 2)
    endog = endog.loc[:, keep]

    def model():
        return DynamicFactorMQ(endog, factors=q, factor_orders=1, idiosyncratic_ar1=False)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        model().fit(maxiter=iterations, disp=False)
        per_iteration = (time.perf_counter() - t0) / iterations
        t0 = time.perf_counter()
        mod = model()
        res = mod.fit(maxiter=maxiter, disp=False)
        seconds = time.perf_counter() - t0
    smoothed = np.asarray(res.smoother_results.smoothed_forecasts).T  # standardized scale
    mean = np.asarray(mod._endog_mean)
    std = np.asarray(mod._endog_std)
    pred = np.full((N, m), np.nan)
    pred[:, keep.to_numpy()] = smoothed * std + mean
    # a location DFMQ could not take gets the training mean of its log1p counts
    fill = np.nanmean(np.log1p(train), axis=0)
    pred = np.where(np.isnan(pred), np.nan_to_num(fill)[None, :], pred)
    rate = np.maximum(np.expm1(pred), 1e-3)
    cell = poisson_loglik(sim.counts, rate)[heldout]
    return {
        "per_iteration_ms": round(1e3 * per_iteration, 2),
        "to_convergence_s": round(seconds, 2),
        "iterations": int(res.mle_retvals.get("iter", maxiter))
        if isinstance(res.mle_retvals, dict)
        else None,
        "heldout_loglik": float(cell.mean()),
        "rmse_log_rate": float(np.sqrt(np.mean((np.log(rate) - sim.log_rate) ** 2))),
    }


def run_sizes(args, out: dict) -> dict:
    import jax

    from jaxssm import fit_laplace_em, predictive_log_likelihood, select_num_factors

    sizes = [
        ("seed m=163 N=36", 163, 36, 3, 2.0, 0.4, 3),
        ("m=163 N=144", 163, 144, 3, 2.0, 0.4, 3),
        ("m=163 N=576", 163, 576, 3, 2.0, 0.4, 2),
        ("sparse m=1000 N=36", 1000, 36, 3, 0.3, 0.4, 3),
        ("sparse, weak dynamics m=1000 N=36", 1000, 36, 3, 0.3, 0.15, 0),
        ("sparse, static truth m=1000 N=36", 1000, 36, 3, 0.3, 0.0, 0),
    ]
    if args.quick:  # a smoke run of the script itself
        sizes = [("seed m=163 N=36", 20, 12, 2, 2.0, 0.4, 1)]
    rows = {}
    fits = {}
    for name, m, N, q, mean_count, loading_scale, dense_iterations in sizes:
        sim, heldout = simulate(args.seed, m, N, q, mean_count, loading_scale)
        train = np.where(heldout, np.nan, sim.counts)
        row = {"m": m, "N": N, "q": q, "zeros": float((sim.counts == 0).mean())}
        row["laplace_em"], fit = run_laplace_em(train, heldout, sim, q, dense_iterations)
        row["static"] = run_static(train, heldout, sim)
        oracle = poisson_loglik(sim.counts, np.exp(sim.log_rate))[heldout]
        row["oracle"] = {"heldout_loglik": float(oracle.mean())}
        row["dfmq"] = run_dfmq(train, heldout, sim, q, iterations=5, maxiter=args.dfmq_maxiter)
        row["dfmq_speed_ratio"] = round(
            row["dfmq"]["per_iteration_ms"] / row["laplace_em"]["per_iteration_ms_step"], 1
        )
        choice = select_num_factors(jax.random.key(0), train, candidates=(0, 1, 2, 3))
        chosen = fit_laplace_em(train, choice.best)
        chosen_cell = np.asarray(
            predictive_log_likelihood(chosen.params, chosen.posterior, sim.counts, heldout,
                                      parameter_cov=chosen.parameter_covariance())
        )[heldout]  # fmt: skip
        row["select"] = {
            "best_q": choice.best,
            "heldout_loglik_parameter_uncertainty": float(chosen_cell.mean()),
            "table": choice.table[["num_factors", "heldout_loglik_per_cell"]].to_dict("list"),
        }
        rows[name] = row
        fits[name] = (sim, heldout, fit)
        print(f"\n== {name}\n{json.dumps(row, indent=1)}", flush=True)
    out["sizes"] = rows
    return fits


def run_scaling(args, out: dict) -> None:
    from jaxssm import EMOptions
    from jaxssm.fit import initial_params, make_prior
    from jaxssm.params import Priors, make_panel

    rows = []
    grid = [(163, 36), (163, 144), (163, 576), (163, 2304), (50, 144), (500, 144), (2000, 144)]
    for m, N in grid[:2] if args.quick else grid:
        sim, _ = simulate(args.seed, m, N, 3, 2.0, 0.4)
        panel = make_panel(sim.counts)
        params, f = initial_params(panel, 3)
        prior = make_prior(panel, Priors(), 3)
        ms = 1e3 * per_iteration_step(panel, params, f, prior, EMOptions(), 20)
        rows.append({"m": m, "N": N, "per_iteration_ms": round(ms, 3)})
        print(rows[-1], flush=True)
    out["scaling"] = rows


def stan_data_for(train, heldout, x, offset=None):
    N, m = train.shape
    obs = np.argwhere(~np.isnan(train))
    held = np.argwhere(heldout)
    return {
        "N": N,
        "m": m,
        "n_obs": len(obs),
        "obs_window": (obs[:, 0] + 1).tolist(),
        "obs_location": (obs[:, 1] + 1).tolist(),
        "obs_count": train[obs[:, 0], obs[:, 1]].astype(int).tolist(),
        "obs_offset": np.zeros(len(obs)).tolist(),
        "n_held": len(held),
        "held_window": (held[:, 0] + 1).tolist(),
        "held_location": (held[:, 1] + 1).tolist(),
        "held_count": x[held[:, 0], held[:, 1]].astype(int).tolist(),
        "held_offset": np.zeros(len(held)).tolist(),
    }


def run_stan(args, fits: dict, out: dict) -> None:
    import stan

    from jaxssm import log_rate_moments
    from jaxssm.fit import pooled_log_rate
    from jaxssm.params import Priors, make_panel

    sim, heldout, fit = fits["seed m=163 N=36"]
    train = np.where(heldout, np.nan, sim.counts)
    q = fit.num_factors
    data = stan_data_for(train, heldout, sim.counts)
    p = fit.params
    latent = {
        **{k: data[k] for k in ("N", "m", "n_obs", "obs_window", "obs_location", "obs_count",
                                "obs_offset")},
        "q": q,
        "mu": np.asarray(p.mu).tolist(),
        "Lambda": np.asarray(p.Lambda).tolist(),
        "Phi": np.asarray(p.Phi).tolist(),
        "Q": np.asarray(p.Q).tolist(),
        "a1": np.asarray(p.a1).tolist(),
        "P1": np.asarray(p.P1).tolist(),
    }  # fmt: skip
    priors = Priors()
    full = {
        **data,
        "q": q,
        "mu_bar": pooled_log_rate(make_panel(train)),
        "mu_scale": priors.mu_scale,
        "loading_scale": priors.loading_scale,
    }
    cwd = os.getcwd()
    row: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)
        try:
            t0 = time.perf_counter()
            post = stan.build((HERE / "stan" / "ssm_latent.stan").read_text(), data=latent,
                              random_seed=args.seed)  # fmt: skip
            row["latent_build_s"] = round(time.perf_counter() - t0, 1)
            t0 = time.perf_counter()
            n = 100 if args.quick else 1000
            draws = post.sample(num_chains=4, num_warmup=n, num_samples=n)
            row["latent_sample_s"] = round(time.perf_counter() - t0, 1)
            f_draws = np.moveaxis(np.asarray(draws["f"]), -1, 0)  # (draws, N, q)
            row["latent_divergences"] = int(draws.to_frame()["divergent__"].sum())

            t0 = time.perf_counter()
            post_full = stan.build((HERE / "stan" / "ssm_full.stan").read_text(), data=full,
                                   random_seed=args.seed)  # fmt: skip
            row["full_build_s"] = round(time.perf_counter() - t0, 1)
            t0 = time.perf_counter()
            n = 100 if args.quick else 500
            # start the chains at the Laplace-EM estimate (NUTS still explores; random starts
            # overflow exp() in the Poisson rates and waste the warm-up)
            f_hat = np.asarray(fit.posterior.mean)
            Phi = np.asarray(p.Phi)
            z = np.concatenate([f_hat[:1], f_hat[1:] - f_hat[:-1] @ Phi.T])
            init = {"mu": np.asarray(p.mu).tolist(), "Lambda": np.asarray(p.Lambda).tolist(),
                    "Phi": Phi.tolist(), "z": z.tolist()}  # fmt: skip
            draws_full = post_full.sample(
                num_chains=4, num_warmup=n, num_samples=n, init=[init] * 4
            )
            row["full_sample_s"] = round(time.perf_counter() - t0, 1)
            frame = draws_full.to_frame()
            row["full_divergences"] = int(frame["divergent__"].sum())
            held = np.asarray(draws_full["held_loglik"])  # (n_held, draws)
        finally:
            os.chdir(cwd)
    # Laplace vs NUTS for f and log-rates per cell, params fixed
    f_mean, f_sd = f_draws.mean(0), f_draws.std(0, ddof=1)
    lap_mean = np.asarray(fit.posterior.mean)
    lap_sd = np.sqrt(np.diagonal(np.asarray(fit.posterior.V_diag), axis1=-2, axis2=-1))
    z_f = np.abs(lap_mean - f_mean) / f_sd
    eta_draws = np.asarray(p.mu) + f_draws @ np.asarray(p.Lambda).T
    eta_mean, eta_var = (np.asarray(a) for a in log_rate_moments(p, fit.posterior))
    z_eta = np.abs(eta_mean - eta_draws.mean(0)) / eta_draws.std(0, ddof=1)
    sd_ratio = np.sqrt(eta_var) / eta_draws.std(0, ddof=1)
    row.update(
        {
            "f_z_median": float(np.median(z_f)),
            "f_z_max": float(z_f.max()),
            "f_sd_ratio_median": float(np.median(lap_sd / f_sd)),
            "log_rate_z_median": float(np.median(z_eta)),
            "log_rate_z_p99": float(np.quantile(z_eta, 0.99)),
            "log_rate_sd_ratio_p01_median_p99": [
                float(np.quantile(sd_ratio, k)) for k in (0.01, 0.5, 0.99)
            ],
        }
    )
    from scipy.special import logsumexp

    per_cell = logsumexp(held, axis=1) - np.log(held.shape[1])
    row["full_heldout_loglik"] = float(per_cell.mean())
    row["laplace_em_heldout_loglik"] = out["sizes"]["seed m=163 N=36"]["laplace_em"][
        "heldout_loglik"
    ]
    row["laplace_em_to_convergence_s"] = out["sizes"]["seed m=163 N=36"]["laplace_em"][
        "to_convergence_s"
    ]
    out["stan"] = row
    print(f"\n== Stan\n{json.dumps(row, indent=1)}", flush=True)


FULL_BAYES_SIZES = [
    ("seed m=163 N=36", 163, 36, 3, 2.0, 0.4),
    ("m=163 N=144", 163, 144, 3, 2.0, 0.4),
    ("m=163 N=576", 163, 576, 3, 2.0, 0.4),
    ("sparse m=1000 N=36", 1000, 36, 3, 0.3, 0.4),
]


def run_full_bayes(args, out: dict) -> None:
    """jaxssm's NUTS over every parameter against its own Laplace-EM on the same held-out cells."""
    import jax

    from jaxssm import fit_laplace_em, predictive_log_likelihood, sample_full_posterior

    sizes = FULL_BAYES_SIZES[:1] if args.quick else FULL_BAYES_SIZES
    rows = {}
    for name, m, N, q, mean_count, loading_scale in sizes:
        if args.quick:
            m, N, q = 20, 12, 2
        sim, heldout = simulate(args.seed, m, N, q, mean_count, loading_scale)
        train = np.where(heldout, np.nan, sim.counts)
        t0 = time.perf_counter()
        fit = fit_laplace_em(train, q, loop="jax")
        _, laplace_s = timed(fit_laplace_em, train, q, loop="jax")
        laplace = np.asarray(
            predictive_log_likelihood(fit.params, fit.posterior, sim.counts, heldout,
                                      parameter_cov=fit.parameter_covariance())
        )[heldout]  # fmt: skip
        plug_in = np.asarray(
            predictive_log_likelihood(fit.params, fit.posterior, sim.counts, heldout)
        )[heldout]
        row = {
            "m": m,
            "N": N,
            "q": q,
            "heldout_cells": int(heldout.sum()),
            "laplace_em": {
                "heldout_loglik": float(plug_in.mean()),
                "heldout_loglik_parameter_uncertainty": float(laplace.mean()),
                "to_convergence_s": round(laplace_s, 3),
            },
        }
        runs = [("1x(200+200) centred", 1, 200, "centered")]
        if name.startswith("seed") and not args.quick:
            runs += [
                ("4x(500+500) centred", 4, 500, "centered"),
                ("4x(500+500) non-centred (as Stan)", 4, 500, "noncentered"),
            ]
        oracle = poisson_loglik(sim.counts, np.exp(sim.log_rate))[heldout]
        row["oracle"] = float(oracle.mean())
        for label, chains, n, parametrization in runs:
            if args.quick:
                n = 50
            full = sample_full_posterior(jax.random.key(args.seed), fit, num_warmup=n,
                                         num_samples=n, num_chains=chains,
                                         parametrization=parametrization)  # fmt: skip
            cell = full.predictive_log_likelihood(sim.counts, heldout)[heldout]
            diff = cell - laplace
            rates = full.expected_rates()
            row[label] = {
                **full.diagnostics(),
                "heldout_loglik": float(cell.mean()),
                "minus_laplace_em": float(diff.mean()),
                "minus_laplace_em_se": float(diff.std(ddof=1) / np.sqrt(diff.size)),
                "rmse_log_rate": float(np.sqrt(np.mean((np.log(rates) - sim.log_rate) ** 2))),
                "time_ratio_to_laplace_em": round(full.seconds / laplace_s, 1),
            }
            print(f"{name:>20} | {label:<36} | held-out {cell.mean():.4f} "
                  f"(Laplace-EM {laplace.mean():.4f}, diff {diff.mean():+.4f} "
                  f"± {row[label]['minus_laplace_em_se']:.4f}) | {full.seconds:7.1f} s | "
                  f"div {row[label]['divergences']}", flush=True)  # fmt: skip
        row["total_s"] = round(time.perf_counter() - t0, 1)
        rows[name] = row
    out["full_bayes"] = rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sections", default="sizes,scaling,stan")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--dfmq-maxiter", type=int, default=300)
    parser.add_argument("--quick", action="store_true", help="tiny sizes: check the script runs")
    parser.add_argument("--out", type=Path, default=HERE / "output" / "ssm_laplace_em.json")
    args = parser.parse_args()
    import jax

    jax.config.update("jax_enable_x64", True)
    sections = args.sections.split(",")
    out: dict = {
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "jax": jax.__version__,
            "backend": jax.default_backend(),
        },
        "args": {k: str(v) for k, v in vars(args).items()},
        "float": "float64",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)

    def save() -> None:
        args.out.write_text(json.dumps(out, indent=2, default=str))

    fits = None
    if "sizes" in sections or "stan" in sections:
        fits = run_sizes(args, out)
        save()
    if "scaling" in sections:
        run_scaling(args, out)
        save()
    if "stan" in sections:
        run_stan(args, fits, out)
        save()
    if "nuts" in sections:
        run_full_bayes(args, out)
    save()
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
