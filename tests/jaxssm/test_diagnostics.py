"""The check for a factor spent on one window: exact on constructed trajectories (and rotation
invariant), silent on smooth fits, and reported in the status of a fit to data with a one-window
shock at large counts."""

from types import SimpleNamespace

import numpy as np
import pytest

from jaxssm import Params, fit_laplace_em, random_params, simulate_panel
from jaxssm.diagnostics import concentrated_components


def _params(Lambda):
    q = Lambda.shape[1]
    return Params(np.zeros(Lambda.shape[0]), Lambda, np.eye(q), np.eye(q), np.zeros(q), np.eye(q))


@pytest.mark.parametrize("amplitude", [0.5, 6.0])  # a weak spike and a dominant one
def test_flags_exactly_the_spike_component_in_any_rotation(rng, amplitude):
    N, m = 24, 30
    t = np.linspace(0, 1, N)
    smooth = np.stack([np.sin(2 * np.pi * t), t - 0.5], axis=1)
    spike = 0.01 * rng.normal(size=N)
    spike[3] = amplitude
    F = np.column_stack([smooth, spike])
    Lambda = rng.normal(0, 0.5, (m, 3))
    found = concentrated_components(_params(Lambda), SimpleNamespace(mean=F))
    assert [c.window for c in found] == [3]
    assert found[0].share > 0.85
    # rotations of (F, Lambda) give the same verdict
    R, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    again = concentrated_components(_params(Lambda @ R), SimpleNamespace(mean=F @ R))
    assert [(c.component, c.window) for c in again] == [(c.component, c.window) for c in found]
    assert again[0].share == pytest.approx(found[0].share, rel=1e-10)
    # smooth trajectories alone: nothing to report; too few windows: not judged
    assert concentrated_components(_params(Lambda[:, :2]), SimpleNamespace(mean=smooth)) == []
    assert concentrated_components(_params(Lambda), SimpleNamespace(mean=F[:5])) == []


def test_status_reports_a_factor_spent_on_a_one_window_shock():
    """Counts near 5,000 (Poisson sd 1.4 %) with a shock of sd 15 % to every location in window 0:
    the second factor of a q = 2 fit goes to that window; the q = 1 fit is smooth."""
    truth = random_params(0, 60, 1, mean_count=5000.0, loading_scale=0.3)
    sim = simulate_panel(1, truth, 23)
    rng = np.random.default_rng(2)
    log_rate = sim.log_rate.copy()
    log_rate[0] += rng.normal(0, 0.15, 60)
    counts = rng.poisson(np.exp(log_rate)).astype(float)
    one = fit_laplace_em(counts, 1, max_iterations=100, loop="jax")
    assert "warning" not in one.status, one.status
    two = fit_laplace_em(counts, 2, max_iterations=100, loop="jax")
    assert "concentrated in one window (#2:" in two.status and "in window 0)" in two.status, (
        two.status
    )
    (found,) = concentrated_components(two.params, two.posterior)
    assert found.window == 0 and found.share > 0.9
