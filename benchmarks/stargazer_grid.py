r"""A grid of seed-sized stargazer histories with the truth known, simulated at the level of counts.

One history: N monthly windows whose totals grow over time (7,790 stargazers in all by default),
spread over ~116 countries with a real heavy-tailed geography (the GitHub Innovation Graph's
developer counts per economy in the latest quarter, when ``../shared/data`` has them; else a
Zipf tail); a few countries' log shares move linearly, $\log p_i(\ell) = \log p(\ell) +
r_\ell (i - \bar\imath) - \log Z_i$ (the others renormalised); each stargazer's location is
hidden with a fixed probability (missing at random within a window).

Sections (``--sections``, default all):

* ``drift``: size and power at 5% of :func:`jaxssm.drift_test` (its combined p-value, the score
  test and the max-|z| test) and of the $G^2$ homogeneity test, over many seeds, on the
  scenarios of :data:`SCENARIOS` (no drift and drift, on the real geography and on a flatter
  one with larger drift). The issue's targets: size <= 0.06, power >= 0.8 on the seed-sized
  drifting history.

* ``model``: the pipeline's model choice and imputation on the same histories (the no-drift and
  the seed-sized drifting scenario, ``--model-seeds`` of them): q and the emission chosen by
  5-fold cross-validation over held-out cells (q in ``--candidates``, Poisson and negative
  binomial), with the offset log(located stargazers of the window) as in
  :mod:`jaxssm.stargazers.analysis`; the rate at which a dynamic model is chosen and its paired
  held-out difference against the static one; the imputation error of country totals,
  $\sum_\ell |\hat U_\ell - \sum_i U_i p_i(\ell)|$ over the drifting countries (and over all),
  of the model against the seed's baseline (one distribution for all windows). The issue's
  targets: with drift a dynamic model in >= 80 % of seeds and the drifting countries' error <=
  0.85 x the baseline's; without drift the dynamic model (if chosen) within 1 se of the static one
  and the error <= 1.05 x the baseline's.

Another section plugs in by adding a function ``(seeds, args) -> dict`` to :data:`SECTIONS`;
:func:`simulate_scenario` gives it the same histories.

Usage: ``python benchmarks/stargazer_grid.py --seeds 200 --out
benchmarks/output/stargazer_grid.json``; prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
OUT = Path(__file__).resolve().parent / "output"
INNOVATION_GRAPH = ROOT.parent / "shared" / "data" / "innovationgraph_developers.csv"
SEED_DRIFT = {"IN": 0.02, "BR": 0.02, "NG": 0.02, "US": -0.02}
# the Innovation Graph's largest economies in 2025 Q3, for the Zipf fallback's labels
_FALLBACK_CODES = (
    "US", "IN", "CN", "BR", "GB", "JP", "DE", "ID", "RU", "CA", "FR", "HK", "KR", "VN", "MX",
    "ES", "PH", "TR", "AU", "PK", "NL", "PL", "SG", "IT", "TW", "BD", "UA", "NG", "CO", "AR",
)  # fmt: skip


class SimulatedGeography(NamedTuple):
    """One simulated history of a repository's stargazers, as counts.

    Attributes:
        counts: (N, m) stargazers with a location, per window and country.
        hidden: (N,) stargazers without a location per window.
        shares: (N, m) the true share of each country among a window's stargazers.
        countries: the m country codes (columns of ``counts``), largest base share first.
        totals: (N,) all stargazers per window (``counts.sum(1) + hidden``).
    """

    counts: np.ndarray
    hidden: np.ndarray
    shares: np.ndarray
    countries: tuple[str, ...]
    totals: np.ndarray


def zipf_weights(num_countries: int, exponent: float = 1.0) -> np.ndarray:
    r"""Shares $\propto k^{-a}$ for ranks $k = 1..m$."""
    weights = np.arange(1, num_countries + 1, dtype=float) ** -exponent
    return weights / weights.sum()


def innovation_graph_shares(num_countries: int, path: Path | None = None) -> pd.Series | None:
    """Developer shares of the ``num_countries`` largest economies in the Innovation Graph's
    latest quarter (``EU`` dropped; ``NA`` is Namibia), largest first; None without the file."""
    path = INNOVATION_GRAPH if path is None else Path(path)
    if not path.exists():
        return None
    table = pd.read_csv(path, keep_default_na=False)
    table = table[table["iso2_code"] != "EU"]
    period = table["year"] * 10 + table["quarter"]
    latest = table[period == period.max()].sort_values("developers", ascending=False)
    top = latest.head(num_countries).set_index("iso2_code")["developers"].astype(float)
    return top / top.sum()


def base_geography(
    num_countries: int, base_shares: Mapping[str, float] | Sequence[float] | None = None
) -> pd.Series:
    """Base shares indexed by country code, largest first.

    ``None``: the Innovation Graph (else Zipf with exponent 1); a mapping: those countries and
    weights; a sequence: weights by rank, given to the default geography's codes in rank order.
    """
    if isinstance(base_shares, Mapping):
        shares = pd.Series(base_shares, dtype=float)
        return (shares / shares.sum()).sort_values(ascending=False)
    real = innovation_graph_shares(num_countries)
    if real is not None and len(real) == num_countries:
        codes = list(real.index)
    else:
        extra = [f"Z{k:03d}" for k in range(num_countries)]
        codes = [*_FALLBACK_CODES, *extra][:num_countries]
    if base_shares is None:
        weights = real.to_numpy() if real is not None else zipf_weights(num_countries)
    else:
        weights = np.asarray(base_shares, dtype=float)
        if weights.shape != (num_countries,):
            raise ValueError(f"base_shares needs {num_countries} weights, got {weights.shape}")
    return pd.Series(weights / weights.sum(), index=pd.Index(codes, name="country"))


def drifting_shares(base: pd.Series, drifting: Mapping[str, float], num_windows: int) -> np.ndarray:
    r"""(N, m) shares with $\log p_i(\ell) = \log p(\ell) + r_\ell (i - (N-1)/2)$, renormalised
    per window (``drifting``: country -> rate $r_\ell$ per window)."""
    unknown = set(drifting) - set(base.index)
    if unknown:
        raise ValueError(f"drifting countries not in the geography: {sorted(unknown)}")
    rates = base.index.map(lambda code: drifting.get(code, 0.0)).to_numpy(float)
    time_from_middle = np.arange(num_windows) - (num_windows - 1) / 2
    log_weights = np.log(base.to_numpy())[None, :] + rates[None, :] * time_from_middle[:, None]
    weights = np.exp(log_weights - log_weights.max(axis=1, keepdims=True))
    return weights / weights.sum(axis=1, keepdims=True)


def window_totals(
    rng: np.random.Generator, num_windows: int, total: int, growth: float
) -> np.ndarray:
    r"""All stargazers per window: ``total`` spread multinomially with weights
    $\propto e^{\text{growth} \cdot i}$ (growth per window)."""
    weights = np.exp(growth * np.arange(num_windows))
    return rng.multinomial(total, weights / weights.sum())


def simulate_geography(
    seed: int,
    num_windows: int = 36,
    total: int = 7790,
    num_countries: int = 116,
    hidden_fraction: float | tuple[float, float] = 0.47,
    drifting: Mapping[str, float] = SEED_DRIFT,
    base_shares: Mapping[str, float] | Sequence[float] | None = None,
    growth: float = 0.03,
) -> SimulatedGeography:
    """A seed-sized stargazer history as counts (see the module docstring).

    Args:
        seed: the seed of the history.
        num_windows: N, monthly windows.
        total: all stargazers over the N windows.
        num_countries: m, the countries of the geography.
        hidden_fraction: each stargazer's location is hidden with this probability, or a
            (first, last) pair for a rate that rises linearly over the windows.
        drifting: country -> change of its log share per window (0 for the others).
        base_shares: see :func:`base_geography` (default: the real geography).
        growth: log growth of the window totals per window.
    """
    rng = np.random.default_rng(seed)
    base = base_geography(num_countries, base_shares)
    shares = drifting_shares(base, drifting, num_windows)
    totals = window_totals(rng, num_windows, total, growth)
    everyone = np.stack([rng.multinomial(t, p) for t, p in zip(totals, shares, strict=True)])
    if isinstance(hidden_fraction, tuple):
        hidden_fraction = np.linspace(*hidden_fraction, num_windows)[:, None]
    located = rng.binomial(everyone, 1.0 - hidden_fraction)
    return SimulatedGeography(
        counts=located,
        hidden=totals - located.sum(axis=1),
        shares=shares,
        countries=tuple(base.index),
        totals=totals,
    )


def counts_frame(sim: SimulatedGeography) -> pd.DataFrame:
    """The located counts as a (window × country) frame, windows labelled 0..N-1."""
    return pd.DataFrame(
        sim.counts,
        index=pd.RangeIndex(len(sim.counts), name="window"),
        columns=pd.Index(sim.countries, name="country"),
    )


class Scenario(NamedTuple):
    """A setting of the grid: the keyword arguments of :func:`simulate_geography` beside the
    seed, and whether it has drift (size vs power)."""

    name: str
    description: str
    drifting: dict
    zipf_exponent: float | None = None  # None: the real geography
    hidden_fraction: float | tuple[float, float] = 0.47

    @property
    def has_drift(self) -> bool:
        return bool(self.drifting)

    def simulate_kwargs(self, num_countries: int = 116) -> dict:
        base = (
            None if self.zipf_exponent is None else zipf_weights(num_countries, self.zipf_exponent)
        )
        return {
            "drifting": self.drifting,
            "base_shares": base,
            "num_countries": num_countries,
            "hidden_fraction": self.hidden_fraction,
        }


FLAT_DRIFT = {"IN": 0.03, "BR": 0.03, "NG": 0.03, "US": -0.03, "DE": -0.03, "JP": -0.03}
# weaker settings that tell the drift test's statistics apart (both strong ones reach power 1)
SEED_DRIFT_WEAK = {code: rate / 2 for code, rate in SEED_DRIFT.items()}
_SIXTEEN = ("US", "IN", "CN", "BR", "GB", "JP", "DE", "ID", "RU", "CA", "FR", "HK", "KR", "VN",
            "MX", "NG")  # fmt: skip
FLAT_MANY_WEAK = {code: 0.01 * (-1) ** k for k, code in enumerate(_SIXTEEN)}
SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario("seed_static", "real geography, no drift (size)", {}),
        Scenario("seed_drift", "real geography, IN/BR/NG +2 %/month, US -2 %/month", SEED_DRIFT),
        Scenario("seed_drift_rising_hidden", "seed_drift, hidden share rising 30 % -> 64 %",
                 SEED_DRIFT, None, (0.30, 0.64)),
        Scenario("seed_static_rising_hidden", "seed_static, hidden share rising 30 % -> 64 %",
                 {}, None, (0.30, 0.64)),
        Scenario("seed_drift_weak", "real geography, the same four at ±1 %/month", SEED_DRIFT_WEAK),
        Scenario("flat_static", "shares ∝ k^-0.6, no drift (size)", {}, 0.6),
        Scenario("flat_drift", "k^-0.6, IN/BR/NG +3 %, US/DE/JP -3 %/month", FLAT_DRIFT, 0.6),
        Scenario("flat_many_weak", "k^-0.6, 16 countries at ±1 %/month", FLAT_MANY_WEAK, 0.6),
    )
}  # fmt: skip


def simulate_scenario(scenario: Scenario, seed: int, **overrides) -> SimulatedGeography:
    """The history of one scenario and seed (``overrides`` go to :func:`simulate_geography`)."""
    return simulate_geography(seed, **{**scenario.simulate_kwargs(), **overrides})


# --- section: drift ------------------------------------------------------------------------------


def drift_row(sim: SimulatedGeography, seed: int, num_draws: int, alpha: float = 0.05) -> dict:
    """The drift test and G² on one history: p-values and the drifting countries found."""
    from jaxssm import drift_test
    from jaxssm.stargazers.homogeneity import homogeneity_test

    frame = counts_frame(sim)
    # the tests' draws get their own streams, apart from the one that simulated the history
    drift = drift_test(frame, num_draws=num_draws, seed=np.random.default_rng([seed, 1]))
    g2 = homogeneity_test(frame, num_draws=num_draws, seed=np.random.default_rng([seed, 2]))
    moving = set(np.asarray(sim.countries)[np.ptp(np.log(sim.shares), axis=0) > 1e-9])
    up, down = drift.movers(alpha)
    found = set(up) | set(down)
    return {
        "combined_p": drift.p_value,
        "score_p": drift.score_p_value,
        "max_z_p": drift.max_z_p_value,
        "asymptotic_p": drift.asymptotic_p_value,
        "g2_p": g2.p_value,
        "statistic": drift.statistic,
        "df": drift.df,
        "max_z": drift.max_z,
        "located": int(sim.counts.sum()),
        "countries_seen": drift.num_locations,
        "movers_found": len(found & moving),
        "false_movers": len(found - moving),
    }


def rejection_table(rows: pd.DataFrame, alpha: float = 0.05) -> pd.DataFrame:
    """Rejection rate at ``alpha`` per scenario and test, with its binomial standard error."""
    tests = {
        "drift (combined)": "combined_p",
        "drift score": "score_p",
        "drift max-|z|": "max_z_p",
        "score, chi-square": "asymptotic_p",
        "G²": "g2_p",
    }
    out = []
    for name, group in rows.groupby("scenario", sort=False):
        record = {"scenario": name, "seeds": len(group)}
        for label, column in tests.items():
            rate = float(np.mean(group[column] <= alpha))
            record[label] = rate
            record[f"{label} se"] = float(np.sqrt(rate * (1 - rate) / len(group)))
        record["movers found"] = float(group["movers_found"].mean())
        record["false movers"] = float(group["false_movers"].mean())
        out.append(record)
    return pd.DataFrame(out)


def drift_section(seeds: Sequence[int], args: argparse.Namespace) -> dict:
    """Size and power of the drift test and G² on every scenario."""
    rows = []
    start = time.perf_counter()
    for scenario in scenarios_of(args):
        t0 = time.perf_counter()
        for seed in seeds:
            sim = simulate_scenario(scenario, seed)
            rows.append(
                {"scenario": scenario.name, "seed": seed, **drift_row(sim, seed, args.draws)}
            )
        print(
            f"  {scenario.name}: {len(seeds)} seeds in {time.perf_counter() - t0:.1f} s", flush=True
        )
    frame = pd.DataFrame(rows)
    table = rejection_table(frame)
    shown = table[[c for c in table.columns if not c.endswith(" se")]]
    print(shown.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    return {
        "num_draws": args.draws,
        "alpha": 0.05,
        "scenarios": {s.name: {"description": s.description, "drifting": s.drifting,
                               "zipf_exponent": s.zipf_exponent} for s in scenarios_of(args)},
        "geography": "innovation graph" if INNOVATION_GRAPH.exists() else "zipf fallback",
        "rejection_rates": table.to_dict(orient="records"),
        "rows": rows,
        "seconds": time.perf_counter() - start,
    }  # fmt: skip


def scenarios_of(args: argparse.Namespace) -> list[Scenario]:
    """The scenarios named by ``--scenarios`` (all by default)."""
    names = [n.strip() for n in (args.scenarios or ",".join(SCENARIOS)).split(",") if n.strip()]
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        raise SystemExit(f"unknown scenarios {unknown}; there are {list(SCENARIOS)}")
    return [SCENARIOS[n] for n in names]


# --- section: model -------------------------------------------------------------------------------


def model_row(sim: SimulatedGeography, seed: int, args: argparse.Namespace) -> dict:
    """Model choice, fit and imputation on one history, against the baseline."""
    import jax

    from jaxssm import fit_laplace_em, select_num_factors
    from jaxssm.stargazers.imputation import baseline_imputation, impute_locations

    X = sim.counts.astype(float)
    m = X.shape[1]
    located = X.sum(axis=1)
    observed = np.repeat((located > 0)[:, None], m, axis=1)
    offset = np.where(located > 0, np.log(np.maximum(located, 1)), 0.0)[:, None] * np.ones((1, m))
    candidates = tuple(int(q) for q in args.candidates.split(","))
    key = jax.random.key(seed)
    k_sel, k_imp = jax.random.split(key)
    t0 = time.perf_counter()
    sel = select_num_factors(
        k_sel, X, candidates=candidates, emissions=("poisson", "negbin"), mask=observed,
        offset=offset, folds=5, max_iterations=300,
    )  # fmt: skip
    table = sel.table
    score = table["heldout_loglik_per_cell"]
    static = table.loc[score[table["num_factors"] == 0].idxmax()]
    dynamic = table.loc[score[table["num_factors"] > 0].idxmax()]
    diff, se = sel.difference(
        int(dynamic["num_factors"]), 0, emission=str(dynamic["emission"]),
        baseline_emission=str(static["emission"]),
    )  # fmt: skip
    fit = fit_laplace_em(
        X, sel.best, emission=sel.best_emission, mask=observed, offset=offset,
        max_iterations=300,
    )  # fmt: skip
    seconds = time.perf_counter() - t0
    S = args.imputations
    model = impute_locations(k_imp, fit, X, sim.hidden, list(sim.countries), num_draws=S)
    base = baseline_imputation(seed, X, sim.hidden, list(sim.countries), num_draws=S)
    expected = sim.hidden[:, None] * sim.shares  # (N, m): the hidden stargazers' expected places
    drifting = np.isin(np.asarray(sim.countries), list(args.drifting_countries))

    def errors(imputation):
        per_window = imputation.imputed.mean(axis=0)  # (N, m)
        window_gap = np.abs(per_window - expected)
        total_gap = np.abs(per_window.sum(axis=0) - expected.sum(axis=0))
        return {
            "drifting_windows": float(window_gap[:, drifting].sum()),
            "drifting_totals": float(total_gap[drifting].sum()),
            "all_windows": float(window_gap.sum()),
            "all_totals": float(total_gap.sum()),
        }

    model_err, base_err = errors(model), errors(base)
    return {
        "best_q": sel.best,
        "best_emission": sel.best_emission,
        "dynamic_chosen": bool(sel.best > 0),
        "dynamic_q": int(dynamic["num_factors"]),
        "dynamic_emission": str(dynamic["emission"]),
        "difference_per_cell": diff,
        "difference_se": se,
        "fit_status": fit.status,
        **{f"model_error_{k}": v for k, v in model_err.items()},
        **{f"baseline_error_{k}": v for k, v in base_err.items()},
        "hidden": int(sim.hidden.sum()),
        "seconds": seconds,
    }


def model_section(seeds: Sequence[int], args: argparse.Namespace) -> dict:
    """Model choice and imputation error on the no-drift and the seed-sized drifting scenario."""
    rows = []
    start = time.perf_counter()
    model_seeds = list(seeds)[: args.model_seeds]
    names = (
        [n.strip() for n in args.scenarios.split(",")]
        if args.scenarios
        else ["seed_static", "seed_drift", "seed_static_rising_hidden", "seed_drift_rising_hidden"]
    )
    args.drifting_countries = tuple(SEED_DRIFT)
    for name in names:
        scenario = SCENARIOS[name]
        t0 = time.perf_counter()
        for seed in model_seeds:
            sim = simulate_scenario(scenario, seed)
            row = {"scenario": name, "seed": seed, **model_row(sim, seed, args)}
            rows.append(row)
            print(
                f"    {name} seed {seed}: q = {row['best_q']} {row['best_emission']}, "
                f"dynamic - static {row['difference_per_cell']:+.4f} ± {row['difference_se']:.4f}, "
                f"drifting per window {row['model_error_drifting_windows']:.1f} vs "
                f"{row['baseline_error_drifting_windows']:.1f}, totals "
                f"{row['model_error_drifting_totals']:.1f} vs "
                f"{row['baseline_error_drifting_totals']:.1f} ({row['seconds']:.0f} s)",
                flush=True,
            )
        print(f"  {name}: {len(model_seeds)} seeds in {time.perf_counter() - t0:.0f} s", flush=True)
    frame = pd.DataFrame(rows)
    summary = []
    for name, group in frame.groupby("scenario", sort=False):
        within = np.abs(group["difference_per_cell"]) <= group["difference_se"]
        chosen = group["dynamic_chosen"]

        def ratio(kind, group=group):
            return float(group[f"model_error_{kind}"].sum() / group[f"baseline_error_{kind}"].sum())

        summary.append(
            {
                "scenario": name,
                "seeds": len(group),
                "dynamic chosen": float(chosen.mean()),
                "negbin chosen": float((group["best_emission"] == "negbin").mean()),
                "dynamic - static per cell (mean)": float(group["difference_per_cell"].mean()),
                "chosen dynamic within 1 se of static": float(within[chosen].mean())
                if chosen.any()
                else float("nan"),
                "error ratio, drifting countries per window": ratio("drifting_windows"),
                "error ratio, drifting countries' totals": ratio("drifting_totals"),
                "error ratio, all countries per window": ratio("all_windows"),
                "error ratio, all countries' totals": ratio("all_totals"),
            }
        )
    table = pd.DataFrame(summary)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    return {
        "candidates": args.candidates,
        "imputations": args.imputations,
        "summary": table.to_dict(orient="records"),
        "rows": rows,
        "seconds": time.perf_counter() - start,
    }


SECTIONS: dict[str, Callable[[Sequence[int], argparse.Namespace], dict]] = {
    "drift": drift_section,
    "model": model_section,
}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=200, help="histories per scenario")
    parser.add_argument("--first-seed", type=int, default=0, help="seeds first..first+seeds-1")
    parser.add_argument("--draws", type=int, default=499, help="Monte Carlo tables per test")
    parser.add_argument("--scenarios", default=None, help=f"comma-separated, of {list(SCENARIOS)}")
    parser.add_argument(
        "--sections", default=",".join(SECTIONS), help=f"comma-separated, of {list(SECTIONS)}"
    )
    parser.add_argument(
        "--model-seeds", type=int, default=20, help="histories per scenario (model)"
    )
    parser.add_argument("--candidates", default="0,1,2", help="numbers of factors (model)")
    parser.add_argument("--imputations", type=int, default=400, help="draws per imputation (model)")
    parser.add_argument("--out", type=Path, default=OUT / "stargazer_grid.json")
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    chosen = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = [s for s in chosen if s not in SECTIONS]
    if unknown:
        parser.error(f"unknown sections {unknown}; there are {list(SECTIONS)}")
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    if "model" in chosen:
        import jax

        jax.config.update("jax_enable_x64", True)
    start = time.perf_counter()
    result = {
        "command": "python benchmarks/stargazer_grid.py " + " ".join(argv),
        "machine": {"platform": platform.platform(), "processor": platform.processor()},
        "seeds": seeds,
        "sections": {},
    }
    for name in chosen:
        print(f"section {name}:", flush=True)
        result["sections"][name] = SECTIONS[name](seeds, args)
    result["seconds"] = time.perf_counter() - start
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, default=float))
    print(f"{result['seconds']:.0f} s; wrote {args.out}")


if __name__ == "__main__":
    main()
