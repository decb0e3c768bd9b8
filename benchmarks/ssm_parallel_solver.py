"""The E-step's block-tridiagonal linear algebra: the sequential scans of ``jaxssm.block_tridiag``
against the block cyclic reduction of ``jaxssm.cyclic_reduction`` (depth O(log N)).

* ``kernels``: at q = 3 and N = 36 ... 9216, in float64 and float32, the time of one jitted
  factor + solve + inverse blocks (after compilation, median of repeats), the compile time, the
  depth (scan steps against reduction levels), and the largest difference of the inverse blocks
  from the float64 sequential result (relative to the largest entry).
* ``em``: the time per Laplace-EM iteration (the jitted step called from Python, float64) at the
  seed-like m = 163, N = 576, q = 3, with ``EMOptions(linear_solver=...)`` either way.

Cyclic reduction does about twice the arithmetic of the scans; its point is the O(log N)
critical path on parallel hardware (GPU/TPU). On a CPU with a couple of cores it is expected to be
slower: these figures are what it costs there, not a claim of a speed-up.

Usage::

    python benchmarks/ssm_parallel_solver.py                    # both sections (~3 minutes)
    python benchmarks/ssm_parallel_solver.py --sections kernels --sizes 36,144
"""

from __future__ import annotations

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SOLVERS = ("sequential", "parallel")


def random_spd_blocks(rng: np.random.Generator, N: int, q: int):
    """Blocks of $J = L L^\\top + I$ for a random lower block-bidiagonal $L$ (diagonal $D_i$,
    sub-diagonal $E_i$): $A_i = D_i D_i^\\top + E_i E_i^\\top + I$, $C_i = E_i D_{i-1}^\\top$."""
    D = rng.normal(size=(N, q, q))
    E = 0.5 * rng.normal(size=(N, q, q))
    E[0] = 0
    A = D @ D.transpose(0, 2, 1) + E @ E.transpose(0, 2, 1) + np.eye(q)
    C = np.zeros((N, q, q))
    C[1:] = E[1:] @ D[:-1].transpose(0, 2, 1)
    return A, C


def kernel(solver: str):
    """One jitted factor + solve + inverse blocks with the chosen module."""
    import jax

    from jaxssm import block_tridiag as bt
    from jaxssm import cyclic_reduction as cr

    def run(A, C, b):
        if solver == "parallel":
            fac = cr.factor(A, C)
            return cr.logdet(fac), cr.solve(fac, b), cr.inverse_blocks(fac)
        chol = bt.cholesky(A, C)
        return bt.logdet(chol), bt.solve(chol, b), bt.inverse_blocks(chol)

    return jax.jit(run)


def median_times(fns: dict, *args, min_repeats: int = 7, budget_s: float = 2.0) -> dict:
    """Median seconds of each ``fn(*args)`` (already compiled) over at least ``min_repeats``
    calls, more while under ``budget_s``; the functions take turns, so a change in the load of a
    shared machine falls on all of them alike."""
    import jax

    times: dict = {name: [] for name in fns}
    start = time.perf_counter()
    while len(times[next(iter(fns))]) < min_repeats or (
        time.perf_counter() - start < budget_s and len(times[next(iter(fns))]) < 200
    ):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            jax.block_until_ready(fn(*args))
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(t) for name, t in times.items()}


def run_kernels(args, out: dict) -> None:
    import jax
    import jax.numpy as jnp

    from jaxssm.cyclic_reduction import num_levels

    q = args.q
    rows = []
    print(
        f"\n== kernels: factor + solve + inverse blocks, q = {q}\n"
        f"{'dtype':>8} {'N':>6} {'seq steps':>9} {'levels':>6} {'seq ms':>9} {'par ms':>9} "
        f"{'par/seq':>7} {'seq comp s':>10} {'par comp s':>10} {'seq err':>8} {'par err':>8}",
        flush=True,
    )
    for N in args.sizes:
        A64, C64 = random_spd_blocks(np.random.default_rng(N), N, q)
        b64 = np.random.default_rng(N + 1).normal(size=(N, q))
        reference = None  # float64 sequential inverse blocks
        for dtype in (jnp.float64, jnp.float32):
            A, C, b = (jnp.asarray(x, dtype) for x in (A64, C64, b64))
            row = {"N": N, "q": q, "dtype": jnp.dtype(dtype).name, "levels": num_levels(N)}
            fns = {solver: kernel(solver) for solver in SOLVERS}
            for solver, fn in fns.items():
                t0 = time.perf_counter()
                result = jax.block_until_ready(fn(A, C, b))
                row[f"{solver}_compile_s"] = round(time.perf_counter() - t0, 2)
                V_diag = np.asarray(result[2][0], np.float64)
                if reference is None:
                    reference = V_diag
                scale = np.max(np.abs(reference))
                row[f"{solver}_rel_err"] = float(np.max(np.abs(V_diag - reference)) / scale)
            for solver, seconds in median_times(fns, A, C, b).items():
                row[f"{solver}_ms"] = round(1e3 * seconds, 4)
            row["parallel_over_sequential"] = round(row["parallel_ms"] / row["sequential_ms"], 2)
            rows.append(row)
            print(
                f"{row['dtype']:>8} {N:>6} {4 * N:>9} {row['levels']:>6} "
                f"{row['sequential_ms']:>9.3f} {row['parallel_ms']:>9.3f} "
                f"{row['parallel_over_sequential']:>7.2f} {row['sequential_compile_s']:>10.2f} "
                f"{row['parallel_compile_s']:>10.2f} {row['sequential_rel_err']:>8.1e} "
                f"{row['parallel_rel_err']:>8.1e}",
                flush=True,
            )
    out["kernels"] = rows


def simulate(seed: int, m: int, N: int, q: int, mean_count: float = 2.0):
    """A seed-like panel (as in ``ssm_laplace_em.py``): base log-rates spread with sd 1.5."""
    from jaxssm import random_params, simulate_panel

    params = random_params(seed, m, q, mean_count=mean_count, loading_scale=0.5)
    rng = np.random.default_rng(seed + 1)
    params = params._replace(mu=np.log(mean_count) + rng.normal(0, 1.5, m) - 1.125)
    return simulate_panel(seed + 2, params, N)


def run_em(args, out: dict) -> None:
    """Seconds per jitted EM step from Python, both solvers from the same start (they take the
    same steps: the iterates agree to rounding); ``--em-rounds`` rounds of ``--em-iterations``
    iterations, the solvers taking turns, and the median round."""
    import jax

    from jaxssm import EMOptions
    from jaxssm.em import em_step
    from jaxssm.fit import initial_params, make_prior
    from jaxssm.params import Priors, make_panel

    m, N, q = args.em_m, args.em_N, args.q
    panel = make_panel(simulate(args.seed, m, N, q).counts)
    start = initial_params(panel, q)
    prior = make_prior(panel, Priors(), q)
    row: dict = {"m": m, "N": N, "q": q, "iterations": args.em_iterations, "dtype": "float64",
                 "rounds": args.em_rounds}  # fmt: skip
    options = {solver: EMOptions(linear_solver=solver) for solver in SOLVERS}
    for solver in SOLVERS:
        t0 = time.perf_counter()
        jax.block_until_ready(em_step(panel, *start, prior, options=options[solver]))
        row[f"{solver}_compile_s"] = round(time.perf_counter() - t0, 2)
    rounds: dict = {solver: [] for solver in SOLVERS}
    objectives = {}
    for _ in range(args.em_rounds):
        for solver in SOLVERS:
            params, f = start
            newton, trace = 0, []
            t0 = time.perf_counter()
            for _ in range(args.em_iterations):
                step = em_step(panel, params, f, prior, options=options[solver])
                params, f, post, objective = step.params, step.f, step.posterior, step.objective
                newton += int(post.num_steps)
                trace.append(float(objective))
            rounds[solver].append((time.perf_counter() - t0) / args.em_iterations)
            row[f"{solver}_newton_steps"] = newton
            objectives[solver] = np.asarray(trace)
    for solver in SOLVERS:
        row[f"{solver}_per_iteration_ms"] = round(1e3 * statistics.median(rounds[solver]), 2)
    row["parallel_over_sequential"] = round(
        row["parallel_per_iteration_ms"] / row["sequential_per_iteration_ms"], 2
    )
    row["max_objective_difference"] = float(
        np.max(np.abs(objectives["parallel"] - objectives["sequential"]))
    )
    out["em"] = row
    print(f"\n== em: one Laplace-EM iteration\n{json.dumps(row, indent=1)}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sections", default="kernels,em")
    parser.add_argument("--sizes", default="36,144,576,2304,9216")
    parser.add_argument("--q", type=int, default=3)
    parser.add_argument("--em-m", type=int, default=163)
    parser.add_argument("--em-N", type=int, default=576)
    parser.add_argument("--em-iterations", type=int, default=10)
    parser.add_argument("--em-rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=HERE / "output" / "ssm_parallel_solver.json")
    args = parser.parse_args()
    args.sizes = [int(s) for s in args.sizes.split(",")]
    import jax

    jax.config.update("jax_enable_x64", True)
    sections = args.sections.split(",")
    out: dict = {
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "jax": jax.__version__,
            "backend": jax.default_backend(),
            "devices": [str(d) for d in jax.devices()],
        },
        "args": {k: str(v) for k, v in vars(args).items()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)

    def save() -> None:
        args.out.write_text(json.dumps(out, indent=2, default=str))

    if "kernels" in sections:
        run_kernels(args, out)
        save()
    if "em" in sections:
        run_em(args, out)
    save()
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
