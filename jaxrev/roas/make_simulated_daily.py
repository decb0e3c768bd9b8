"""Regenerate ``simulated_daily.csv`` (the bundled daily funnel table) and its truth.

Run ``python -m jaxrev.roas.make_simulated_daily``; it writes into ``jaxrev/datasets/``. The
market (:func:`jaxrev.roas.market.simulate_market`) has the 19 ad sets and 5 campaigns of the
bundled simulated revenue account, with that account's true revenue per conversion
(``simulated_account_truth.csv``, and its $\\sigma = 1.1$), so that ``jaxrev allocate
bundled:simulated_daily --revenue-fit DIR`` joins with a fit of ``bundled:simulated_account``.
28 days of a 10,000-a-day budget split unevenly (the "current" split, with daily jitter); funnel
rates drift slowly (AR(1), 0.02 a day).
"""

from pathlib import Path

import numpy as np
import pandas as pd

from jaxrev.roas.market import market_daily_table, observe_day, simulate_market

SEED = 20261201
NUM_DAYS = 28
DATASETS = Path(__file__).resolve().parents[1] / "datasets"  # where the bundled tables live
BUDGET = 10_000.0
SIGMA = 1.1  # the simulated account's revenue_sigma (make_simulated.HYPER)


def main() -> None:
    here = DATASETS
    revenue = pd.read_csv(here / "simulated_account_truth.csv")
    sizes = tuple(revenue.groupby("campaign", sort=True).size())
    truth = simulate_market(
        SEED,
        num_seeds=1,
        num_days=NUM_DAYS,
        adsets_per_campaign=sizes,
        impressions_per_spend=100.0,
        ctr=0.01,
        cvr=0.01,
        revenue_sigma=SIGMA,
        revenue_mu=revenue["adset_mu"].to_numpy(),
        funnel_spread=0.35,
        drift=0.02,
        persistence=0.95,
    )
    rng = np.random.default_rng(SEED + 1)
    split = rng.dirichlet(np.full(truth.num_adsets, 2.0))
    observations = []
    for day in range(NUM_DAYS):
        shares = split * np.exp(0.1 * rng.standard_normal(truth.num_adsets))
        spend = BUDGET * shares / shares.sum()
        observations.append(observe_day(rng, truth, day, spend[None]))
    table = market_daily_table(
        truth,
        observations,
        adset_names=revenue["adset"].tolist(),
        campaign_names=sorted(revenue["campaign"].unique()),
    )
    table.to_csv(here / "simulated_daily.csv", index=False)
    last = NUM_DAYS - 1
    pd.DataFrame(
        {
            "adset": revenue["adset"],
            "campaign": revenue["campaign"],
            "impressions_per_spend": truth.impressions_per_spend[0, last],
            "ctr": truth.ctr[0, last],
            "cvr": truth.cvr[0, last],
            "conversions_per_spend": truth.conversions_per_spend[0, last],
            "revenue_per_conversion": truth.revenue_per_conversion[0, last],
            "roas": truth.roas[0, last],
        }
    ).to_csv(here / "simulated_daily_truth.csv", index=False)


if __name__ == "__main__":
    main()
