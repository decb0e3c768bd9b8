"""Regenerate ``simulated_account.csv`` and its truth.

Run ``python -m jaxrev.datasets.make_simulated``.
"""

from pathlib import Path

from jaxrev.simulate import simulate_account

SEED = 20261123
HYPER = {"account_mu": 4.8, "account_mu_sd": 0.3, "campaign_mu_sd": 0.15, "revenue_sigma": 1.1}


def main() -> None:
    sim = simulate_account(SEED, adsets_per_campaign=(4, 4, 4, 4, 3), num_hours=24, **HYPER)
    here = Path(__file__).parent
    table = sim.table.assign(revenue=sim.table["revenue"].round(4))
    table.to_csv(here / "simulated_account.csv", index=False)
    sim.adsets.to_csv(here / "simulated_account_truth.csv", index=False)


if __name__ == "__main__":
    main()
