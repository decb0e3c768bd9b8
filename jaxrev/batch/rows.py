"""The rows a batch run writes: one status row per account, and the tidy summary rows (as
:meth:`RevenueFit.summary`, plus ``account``, ``status`` and ``fingerprint``)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from jaxrev.batch.plan import AccountInput
from jaxrev.summaries import PROBS, stat_names


def status_row(account: str, status: str, fp: str, **extra) -> dict[str, Any]:
    """One account's status row: the defaults of every column, updated with ``extra``."""
    row = {
        "account": account,
        "status": status,
        "rung": extra.pop("rung", "none"),
        "steps": 0,
        "final_elbo": math.nan,
        "rel_elbo_change": math.nan,
        "num_obs": 0,
        "num_adsets": 0,
        "num_campaigns": 0,
        "zero_conversion_rows": 0,
        "invalid_rows": 0,
        "nuts_max_rhat": math.nan,
        "nuts_divergences": -1,
        "bucket": "",
        "seconds": math.nan,
        "error": "",
        "fingerprint": fp,
    }
    row.update(extra)
    return row


def summary_rows(
    items: list[AccountInput], stats: list[dict[str, np.ndarray]], statuses: list[str]
) -> pd.DataFrame:
    """The tidy summary rows (as :meth:`RevenueFit.summary`, plus ``account``, ``status`` and
    ``fingerprint``) of many accounts, built column by column in one DataFrame."""
    names = stat_names(PROBS)
    columns: dict[str, list] = {
        k: []
        for k in ["account", "level", "campaign", "adset", "n_obs", "conversions", "revenue",
                  "raw_mean", *names, "status", "fingerprint"]
    }  # fmt: skip
    for item, stat, status in zip(items, stats, statuses, strict=True):
        data = item.data
        tables = [("adset", data.adsets, stat["adset_mean"][: data.num_adsets])]
        if "campaign_mean" in stat:
            tables.insert(
                0, ("campaign", data.campaigns, stat["campaign_mean"][: data.num_campaigns])
            )
        for level, table, values in tables:
            k = len(table)
            columns["account"].append(np.full(k, item.account, dtype=object))
            columns["level"].append(np.full(k, level, dtype=object))
            columns["campaign"].append(table["campaign"].to_numpy(dtype=object))
            adset = table["adset"].to_numpy(dtype=object) if level == "adset" else np.full(k, None)
            columns["adset"].append(adset)
            for name in ("n_obs", "conversions", "revenue", "raw_mean"):
                columns[name].append(table[name].to_numpy())
            for j, name in enumerate(names):
                columns[name].append(values[:, j])
            columns["status"].append(np.full(k, status, dtype=object))
            columns["fingerprint"].append(np.full(k, item.fingerprint, dtype=object))
    if not columns["account"]:
        return pd.DataFrame()
    return pd.DataFrame({k: np.concatenate(v) for k, v in columns.items()})
