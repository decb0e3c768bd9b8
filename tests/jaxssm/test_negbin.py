"""The negative-binomial emission end to end: the E-step's blocks against the dense Hessian of the
flattened joint, recovery of dispersions and the latent path on a simulated overdispersed panel,
the Poisson fit flagged where it cannot explain the counts, the choice of the emission by
held-out cells, and the full-Bayes density against a NumPy loop."""

import jax
import numpy as np
import pytest
from scipy import stats

from jaxssm import (
    EMOptions,
    fit_laplace_em,
    make_panel,
    random_params,
    select_num_factors,
    simulate_panel,
)
from jaxssm.fit import initial_params
from jaxssm.laplace import dense_precision, precision_blocks

M, N, Q = 16, 40, 1
PHI = np.where(np.arange(M) < M // 2, 0.05, 0.5)  # two groups of locations


def canonical_correlations(a, b):
    qa, _ = np.linalg.qr(a - a.mean(0))
    qb, _ = np.linalg.qr(b - b.mean(0))
    return np.linalg.svd(qa.T @ qb, compute_uv=False)


@pytest.fixture(scope="module")
def data():
    truth = random_params(7, M, Q, mean_count=150.0, loading_scale=0.5)
    truth = truth._replace(log_dispersion=np.log(PHI))
    sim = simulate_panel(8, truth, N)
    heldout = np.random.default_rng(9).uniform(size=sim.counts.shape) < 0.15
    return sim, heldout, np.where(heldout, np.nan, sim.counts)


@pytest.fixture(scope="module")
def fits(data):
    _, _, train = data
    return {e: fit_laplace_em(train, Q, emission=e) for e in ("negbin", "poisson")}


def test_blocks_and_mode_against_the_dense_joint(data, fits):
    _, _, train = data
    fit = fits["negbin"]
    panel = make_panel(train)
    params = fit.params
    f = fit.posterior.mean
    A, C = precision_blocks(f, panel, params)
    J = np.asarray(jax.jit(dense_precision)(f, panel, params))
    for i in range(N):
        np.testing.assert_allclose(A[i], J[i * Q : (i + 1) * Q, i * Q : (i + 1) * Q], rtol=1e-10)
        if i:
            block = J[i * Q : (i + 1) * Q, (i - 1) * Q : i * Q]
            np.testing.assert_allclose(C[i], block, rtol=1e-10, atol=1e-12)
    # the fit's posterior is the E-step at its parameters: the mode (gradient ~ 0) with the
    # dense log-determinant
    from jaxssm.model import log_joint

    grad = np.asarray(jax.jit(jax.grad(log_joint))(f, panel, params))
    assert np.abs(grad).max() < 1e-6 * (1 + np.abs(np.asarray(A)).max())
    assert float(fit.posterior.logdet) == pytest.approx(np.linalg.slogdet(J)[1], rel=1e-10)


def test_recovers_dispersions_and_the_latent_path(data, fits):
    sim, _, _ = data
    fit = fits["negbin"]
    assert fit.converged, fit.status
    phi = np.exp(np.asarray(fit.params.log_dispersion))
    low, high = np.median(phi[PHI == 0.05]), np.median(phi[PHI == 0.5])
    # measured: 0.045 and 0.42 against 0.05 and 0.5 (40 windows, ~34 cells per location)
    assert 0.6 * 0.05 < low < 1.6 * 0.05, phi
    assert 0.6 * 0.5 < high < 1.6 * 0.5, phi
    cc = canonical_correlations(np.asarray(fit.posterior.mean), sim.f)
    assert cc.min() > 0.9, cc
    # q = 1: the loadings up to the factor's sign and scale (the contributions Lambda_l f_i)
    fitted = np.asarray(fit.params.Lambda)[:, 0] * np.std(np.asarray(fit.posterior.mean))
    true = np.asarray(sim.params.Lambda)[:, 0] * np.std(sim.f)
    assert abs(np.corrcoef(fitted, true)[0, 1]) > 0.95  # measured 0.998
    ratio = np.abs(fitted).sum() / np.abs(true).sum()
    assert 0.75 < ratio < 1.25, ratio  # not shrunk away by the learned scale (measured 0.98)
    # dispersions are pooled toward their mean on the log scale
    assert float(fit.prior.dispersion_mean) == pytest.approx(np.mean(np.log(phi)), rel=1e-9)


def test_poisson_is_flagged_and_loses_held_out_cells(data, fits):
    sim, heldout, _ = data
    poisson, negbin = fits["poisson"], fits["negbin"]
    assert not poisson.converged
    assert poisson.status.startswith("not converged:"), poisson.status
    assert "below -50" in poisson.status and "negbin" in poisson.status
    assert poisson.check.cells_below > 0 and negbin.check.cells_below == 0
    nb = negbin.log_predictive(sim.counts, heldout)[heldout]
    po = poisson.log_predictive(sim.counts, heldout)[heldout]
    assert nb.min() > -50
    assert nb.mean() > po.mean() + 10.0  # measured: -5.9 against -53


def test_selection_chooses_the_negative_binomial(data, key):
    _, _, train = data
    sel = select_num_factors(key, train, candidates=(0, 1), folds=1, holdout_fraction=0.2)
    assert sel.best_emission == "negbin" and sel.best == 1, sel.table
    assert set(sel.table["emission"]) == {"poisson", "negbin"}
    d, se = sel.difference(1, 1, emission="negbin", baseline_emission="poisson")
    assert d > 3 * se
    # the static model's own check: its in-sample fit is compared in the dynamic fit's check
    assert np.isfinite(sel.table["heldout_loglik_per_cell"]).all()


def test_full_bayes_density_is_the_negative_binomial(fits):
    from jaxssm.full_bayes import Unconstrained, log_density

    fit = fits["negbin"]
    p = fit.params
    theta = Unconstrained(p.mu, p.Lambda, p.Phi, fit.posterior.mean, p.log_dispersion)
    got = float(log_density(theta, fit.panel, fit.prior, p))
    x, mask = np.asarray(fit.panel.counts), np.asarray(fit.panel.mask)
    eta = np.asarray(p.mu + fit.posterior.mean @ p.Lambda.T)
    r = np.exp(-np.asarray(p.log_dispersion))
    loglik = np.sum(np.where(mask, stats.nbinom.logpmf(x, r, r / (r + np.exp(eta))), 0.0))
    # the rest of the density (priors, transitions) with the dispersion prior added
    poisson_theta = theta._replace(log_dispersion=None)
    rest = float(log_density(poisson_theta, fit.panel, fit.prior, p)) - np.sum(
        np.where(mask, stats.poisson.logpmf(x, np.exp(eta)), 0.0)
    )
    psi = np.asarray(p.log_dispersion)
    prior = (
        -0.5
        * float(fit.prior.dispersion_precision)
        * np.sum((psi - float(fit.prior.dispersion_mean)) ** 2)
    )
    assert got == pytest.approx(loglik + rest + prior, rel=1e-9)


def test_start_values_and_options_errors(data):
    _, _, train = data
    panel = make_panel(train)
    params, _ = initial_params(panel, Q, "negbin")
    phi = np.exp(np.asarray(params.log_dispersion))
    # moments of the residuals put the overdispersed group above the other
    assert np.median(phi[PHI == 0.5]) > 2 * np.median(phi[PHI == 0.05])
    with pytest.raises(ValueError, match="emission must be one of"):
        fit_laplace_em(train, Q, emission="gaussian")
    with pytest.raises(ValueError, match="accelerate must be one of"):
        fit_laplace_em(train, Q, options=EMOptions(accelerate="anderson"), check=False)


def test_messages_are_empty_exactly_when_converged(data, fits):
    negbin, poisson = fits["negbin"], fits["poisson"]
    assert negbin.converged and list(negbin.messages) == []
    # the Poisson fit fails the cell check: one message per failed check
    assert not poisson.converged and list(poisson.messages) == list(poisson.check.problems)
    assert any("below -50" in m for m in poisson.messages)
    _, _, train = data
    stopped = fit_laplace_em(train, Q, emission="negbin", max_iterations=1, check=False)
    assert not stopped.converged and stopped.status.startswith("max_iterations")
    assert len(stopped.messages) == 1 and "max_iterations" in stopped.messages[0]


def test_summary_has_a_row_per_location_and_the_fit_in_attrs(data, fits):
    _, _, train = data
    fit = fits["negbin"]
    names = [f"loc{j}" for j in range(M)]
    table = fit.summary(names)
    assert list(table.columns) == [
        "location", "mu", "loading_1", "dispersion", "observed_cells", "observed_mean",
    ]  # fmt: skip
    assert list(table["location"]) == names
    np.testing.assert_array_equal(table["mu"], np.asarray(fit.params.mu))
    np.testing.assert_array_equal(table["loading_1"], np.asarray(fit.params.Lambda)[:, 0])
    np.testing.assert_array_equal(
        table["dispersion"], np.exp(np.asarray(fit.params.log_dispersion))
    )
    np.testing.assert_array_equal(table["observed_cells"], np.isfinite(train).sum(0))
    np.testing.assert_allclose(table["observed_mean"], np.nanmean(train, axis=0), rtol=1e-12)
    figures = table.attrs["fit"]
    assert figures == {**fit.figures(), "messages": []}
    assert (figures["num_factors"], figures["emission"], figures["converged"]) == (
        Q, "negbin", True,
    )  # fmt: skip
    assert figures["iterations"] == fit.num_iterations
    assert figures["objective"] == float(fit.objective[-1])
    poisson = fits["poisson"].summary()
    assert list(poisson["location"]) == list(range(M)) and poisson["dispersion"].isna().all()
    assert poisson.attrs["fit"]["messages"] == list(fits["poisson"].messages)


def test_save_round_trips_the_parameters_exactly(fits, tmp_path):
    import json

    import pandas as pd

    fit = fits["negbin"]
    names = [f"loc{j}" for j in range(M)]
    folder = tmp_path / "fit"
    written = fit.save(folder, locations=names)
    read = lambda name: pd.read_csv(folder / name)  # noqa: E731
    as64 = lambda a: np.asarray(a, np.float64)  # noqa: E731
    factors = [f"factor_{k + 1}" for k in range(Q)]
    mu = read("params/mu.csv")
    assert list(mu["location"]) == names
    np.testing.assert_array_equal(mu["mu"].to_numpy(), as64(fit.params.mu))
    np.testing.assert_array_equal(
        mu["dispersion"].to_numpy(), np.exp(as64(fit.params.log_dispersion))
    )
    loadings = read("params/loadings.csv")
    assert list(loadings["location"]) == names
    np.testing.assert_array_equal(loadings[factors].to_numpy(), as64(fit.params.Lambda))
    for name, value in (("transition", fit.params.Phi), ("innovation", fit.params.Q)):
        table = read(f"params/{name}.csv")
        assert list(table["factor"]) == factors
        np.testing.assert_array_equal(table[factors].to_numpy(), as64(value))
    initial = read("params/initial_state.csv")
    np.testing.assert_array_equal(initial["mean"].to_numpy(), as64(fit.params.a1))
    np.testing.assert_array_equal(initial[factors].to_numpy(), as64(fit.params.P1))
    f = read("factors.csv")
    assert list(f["window"]) == list(range(N))
    np.testing.assert_array_equal(f[factors].to_numpy(), as64(fit.posterior.mean))
    summary = json.loads((folder / "summary.json").read_text())
    assert summary == {
        "format": 1, **fit.figures(), "messages": [], "num_windows": N, "num_locations": M,
        "files": [n for n in written if n != "summary.json"],
    }  # fmt: skip
    assert set(written) == {*summary["files"], "summary.json"}
    # an existing folder: the fit's files are replaced, other files kept, no temporary left
    (folder / "notes.txt").write_text("kept")
    poisson = fits["poisson"]
    poisson.save(folder)
    assert (folder / "notes.txt").read_text() == "kept"
    assert read("params/mu.csv")["dispersion"].isna().all()
    again = json.loads((folder / "summary.json").read_text())
    assert again["converged"] is False and again["messages"] == list(poisson.messages)
    assert [p.name for p in tmp_path.iterdir()] == ["fit"]
