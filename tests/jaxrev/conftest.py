"""Shared fits: compiled once per session, reused by every test that reads them."""

import pytest

from jaxrev.data import load_revenue_data
from jaxrev.inference import fit
from jaxrev.simulate import simulate_account

SMALL = {
    "adsets_per_campaign": (3, 3, 2),
    "num_hours": 16,
    "account_mu": 4.5,
    "account_mu_sd": 0.3,
    "campaign_mu_sd": 0.15,
    "revenue_sigma": 1.0,
}


@pytest.fixture(scope="session")
def small_sim():
    return simulate_account(7, **SMALL)


@pytest.fixture(scope="session")
def small_data(small_sim):
    return load_revenue_data(small_sim.table)


@pytest.fixture(scope="session")
def nuts_fit(small_data):
    return fit(
        small_data,
        "nuts",
        num_warmup=500,
        num_samples=1000,
        num_chains=4,
        target_accept_prob=0.9,
        seed=1,
        progress=False,
    )


@pytest.fixture(scope="session", params=["meanfield", "fullrank", "lowrank"])
def svi_fit(request, small_data):
    return fit(small_data, "svi", guide=request.param, seed=2, progress=False)


@pytest.fixture(scope="session", autouse=True)
def persistent_compilation_cache(compile_cache):
    """The session's persistent compilation cache, on from the first jaxrev test (the batch tests
    turn it on anyway, for the subprocesses they start): the programs that the tests before
    ``test_compile_cache`` compiled are written to it, so the tests after that test drops every
    compiled program in memory load them from disk instead of compiling them again."""
    return compile_cache
