"""Reading many accounts: a long table (one vectorised validation pass), a folder of
per-account files, or a mapping of account -> DataFrame; an account whose rows are invalid
becomes a ``failed`` status row and the batch goes on."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from jaxrev.batch.plan import AccountInput, BatchOptions, account_seed, fingerprint
from jaxrev.batch.rows import status_row
from jaxrev.data import (
    Columns,
    RevenueData,
    check_columns,
    check_table,
    read_table,
    rows_to_data,
    validate_rows,
)
from jaxrev.errors import InvalidDataError, NoObservationsError


def load_accounts(
    source,
    columns: Columns,
    model: str,
    priors,
    options: BatchOptions,
    on_invalid: Literal["raise", "drop"] = "raise",
    name: str | None = None,
) -> tuple[list[AccountInput], pd.DataFrame]:
    """Validate every account of a long table (one vectorised pass over all rows), a folder of
    per-account files or a mapping of account -> DataFrame. Returns the fittable accounts and a
    ``failed: invalid data: ...`` (or ``failed: no observations: ...`` for an account without a
    single conversion) status row for each of the others. ``name``: what messages call a long
    table (default: its path)."""
    accounts, failed = [], []

    def add(account: str, make: Callable[[], RevenueData], raw: Callable[[], pd.DataFrame]):
        try:
            data = make()
        except (InvalidDataError, NoObservationsError) as err:
            rows = raw()
            kind = "no observations" if isinstance(err, NoObservationsError) else "invalid data"
            failed.append(
                status_row(
                    account,
                    f"failed: {kind}: {str(err).splitlines()[0]}",
                    fingerprint(model, priors, options, None, raw=rows),
                    error=str(err),
                    num_obs=len(rows),
                )
            )
            return
        fp = fingerprint(model, priors, options, data)
        accounts.append(AccountInput(account, data, fp, account_seed(account, options.seed)))

    single = columns._replace(account=None)
    if isinstance(source, Mapping):
        for account, frame in source.items():
            table = frame.reset_index(drop=True)
            add(
                str(account),
                partial(validate_rows, table, single, f"<{account}>", False,
                        on_invalid=on_invalid, account=str(account)),
                lambda table=table: table,
            )  # fmt: skip
        return accounts, pd.DataFrame(failed)
    path = None if isinstance(source, pd.DataFrame) else Path(source)
    if path is not None and path.is_dir():
        files = sorted(
            p for p in path.iterdir() if p.suffix.lower() in (".csv", ".tsv", ".parquet", ".pq")
        )
        if not files:
            raise FileNotFoundError(f"{path}: no .csv, .tsv or .parquet files")
        for file in files:
            table, name, is_csv = read_table(file)
            add(
                file.stem,
                partial(validate_rows, table, single, name, is_csv,
                        on_invalid=on_invalid, account=file.stem),
                lambda table=table: table,
            )  # fmt: skip
        return accounts, pd.DataFrame(failed)

    table, name, is_csv = read_table(source, name)
    if columns.account is None:
        raise ValueError("a long table needs columns.account (the account column)")
    check_columns(table, columns, name)
    ids = table[columns.account].astype("string").str.strip()
    missing = (ids.isna() | (ids == "")).to_numpy(dtype=bool)
    if missing.any():
        rows = (np.flatnonzero(missing) + 1).tolist()
        raise ValueError(f"{name}: rows {rows[:10]} have no account id ({columns.account!r})")
    checked = check_table(table, columns, is_csv, group_by=columns.account)
    account_of = checked.ids[columns.account]
    positions = pd.Series(np.arange(len(account_of))).groupby(account_of, sort=True).indices
    problems = dict(
        tuple(checked.problems.groupby(account_of[checked.problem_position], sort=False))
    )
    empty = checked.problems.iloc[:0]
    for account, where in positions.items():
        add(
            str(account),
            partial(rows_to_data, checked, single, name, positions=where,
                    problems=problems.get(account, empty), on_invalid=on_invalid,
                    account=str(account)),
            partial(table.iloc.__getitem__, where),
        )  # fmt: skip
    return accounts, pd.DataFrame(failed)
