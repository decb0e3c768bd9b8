"""Write the bundled demo: simulated stargazers of a made-up CRM repository, with the truth.

Deterministic: the same package version writes the same bytes. See ``DEMO.md`` next to this file.

Run from the repository root::

    .venv/bin/python -m jaxssm.stargazers.data.make_demo            # writes next to this file
    .venv/bin/python -m jaxssm.stargazers.data.make_demo --out DIR
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import NamedTuple

import pandas as pd

from jaxssm.stargazers.simulate import simulate_stargazers

REPOSITORY = "example/simulated-crm"
SETTINGS = {
    "seed": 20230101,
    "num_windows": 30,
    "freq": "MS",
    "created_at": "2023-01-01",
    "mean_total": 260.0,
    "drift": True,
}
"""The arguments of :func:`jaxssm.stargazers.simulate.simulate_stargazers` (others default)."""

TABLE_NAME = "demo_stargazers.csv"
TRUTH_NAME = "demo_stargazers_truth.csv"
META_NAME = "demo_stargazers.meta.json"
_TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


class DemoFiles(NamedTuple):
    """The demo's three files as text: the table, the truth and the sidecar metadata."""

    table_csv: str
    truth_csv: str
    meta_json: str


def demo_files() -> DemoFiles:
    """Simulate the demo and render its files (nothing is written)."""
    settings = dict(SETTINGS)
    seed = settings.pop("seed")
    sim = simulate_stargazers(seed, **settings)
    table = sim.table.assign(starred_at=sim.table["starred_at"].dt.strftime(_TIME_FORMAT))
    meta = {
        "repository": REPOSITORY,
        "created_at": sim.created_at.strftime(_TIME_FORMAT),
        "freq": SETTINGS["freq"],
        "num_windows": SETTINGS["num_windows"],
        "simulated": True,
        "generator": "jaxssm.stargazers.data.make_demo",
        "seed": seed,
    }
    return DemoFiles(
        table_csv=table.to_csv(index=False, lineterminator="\n"),
        truth_csv=sim.truth.to_csv(index=False, lineterminator="\n"),
        meta_json=json.dumps(meta, indent=2) + "\n",
    )


def read_demo_truth(path: str | Path) -> pd.DataFrame:
    """The truth file as written: ``user``, ``country``, ``hidden`` (bool), ``window`` (int)."""
    dtypes = {"user": str, "country": str, "hidden": bool, "window": int}
    return pd.read_csv(path, keep_default_na=False, dtype=dtypes)


def write_demo(out_dir: str | Path | None = None) -> list[Path]:
    """Write the three demo files into ``out_dir`` (default: this package folder)."""
    out = Path(out_dir) if out_dir is not None else Path(__file__).resolve().parent
    out.mkdir(parents=True, exist_ok=True)
    files = demo_files()
    paths = []
    for name, text in zip((TABLE_NAME, TRUTH_NAME, META_NAME), files, strict=True):
        path = out / name
        path.write_text(text, encoding="utf-8", newline="")
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None, help="folder to write into (default: the package)")
    args = parser.parse_args(argv)
    for path in write_demo(args.out):
        print(f"wrote {path} ({path.stat().st_size / 1e3:.0f} kB)")


if __name__ == "__main__":
    main()
