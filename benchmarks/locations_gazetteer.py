"""The offline location gazetteer: table build time, throughput, memory, coverage and accuracy.

* ``build``: ``GazetteerNormalizer()`` in this process (first build: pycountry and the GeoNames
  JSON read from disk; second build: both already warm), for each ``--populations`` floor; RSS
  growth and table size.
* ``throughput``: the 261 non-empty stargazer locations
  (``mobilitydb_stargazers_locations_unlabeled.csv``) repeated to ``--rows`` rows, through
  ``normalize``: (a) the plain repeated list (206 folded keys: dedupe does most of the work) and
  (b) every row perturbed (random case and spacing, which fold away, plus a random postcode-like
  number, which does not), so nearly every row is a new key read from scratch.
* ``quality``: coverage (share not ``unknown``) and the status mix on the stargazer strings;
  country accuracy on the 108 labelled pairs (``gitgeo_test_location_country_pairs.csv``), all
  rows, listing the misses (the test leaves out 3 rows with debatable labels).

Usage::

    python benchmarks/locations_gazetteer.py                     # ~15 s
    python benchmarks/locations_gazetteer.py --rows 100000 --populations 5000,15000
"""

from __future__ import annotations

import argparse
import csv
import gc
import json
import os
import platform
import random
import resource
import time
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA = HERE.parent.parent / "shared" / "data"


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def stargazer_locations(data: Path) -> list[str]:
    with open(data / "mobilitydb_stargazers_locations_unlabeled.csv", encoding="utf-8") as f:
        return [r["location"] for r in csv.DictReader(f) if r["location"].strip()]


def labelled_pairs(data: Path) -> list[tuple[str, str]]:
    with open(data / "gitgeo_test_location_country_pairs.csv", encoding="utf-8") as f:
        return [(r["location"], r["expected_country"]) for r in csv.DictReader(f)]


def label_code(name: str, gaz) -> str | None:
    """A label's country name as an ISO code (pycountry, then the gazetteer's own aliases)."""
    import pycountry

    from jaxssm.locations import fold

    if name == "None":
        return None
    try:
        return pycountry.countries.lookup(name).alpha_2
    except LookupError:
        return gaz.tables.names[fold(name)][0].country


def perturb(text: str, rng: random.Random) -> str:
    """Random case and spacing (folded away) and a postcode-like number (kept: a new key)."""
    cased = "".join(ch.upper() if rng.random() < 0.2 else ch for ch in text)
    return f"{' ' * rng.randint(0, 2)}{cased}  {rng.randint(1, 99_999)}"


def run_build(args, out: dict) -> None:
    from jaxssm.locations.gazetteer import GazetteerNormalizer

    rows = []
    for population in args.populations:
        for attempt in ("first", "second"):
            gc.collect()
            before = rss_mb()
            t0 = time.perf_counter()
            gaz = GazetteerNormalizer(min_population=population)
            seconds = time.perf_counter() - t0
            gc.collect()
            rows.append(
                {
                    "min_population": population,
                    "build": attempt,
                    "seconds": round(seconds, 2),
                    "names": len(gaz.tables.names),
                    "rss_growth_mb": round(rss_mb() - before, 1),
                    "rss_mb": round(rss_mb(), 1),
                }
            )
            print(rows[-1], flush=True)
            del gaz
    out["build"] = rows


def run_throughput(args, out: dict, locations: list[str]) -> None:
    from jaxssm.locations import dedupe
    from jaxssm.locations.gazetteer import GazetteerNormalizer

    rng = random.Random(args.seed)
    repeated = (locations * (args.rows // len(locations) + 1))[: args.rows]
    perturbed = [perturb(t, rng) for t in repeated]
    rows = []
    for population in args.populations:
        gaz = GazetteerNormalizer(min_population=population)
        for name, texts in (("repeated", repeated), ("perturbed", perturbed)):
            keys, _ = dedupe(texts)
            t0 = time.perf_counter()
            results = gaz.normalize(texts)
            seconds = time.perf_counter() - t0
            rows.append(
                {
                    "min_population": population,
                    "input": name,
                    "rows": len(texts),
                    "unique_keys": len(keys),
                    "seconds": round(seconds, 3),
                    "rows_per_s": round(len(texts) / seconds),
                    "keys_per_s": round(len(keys) / seconds),
                    "coverage": round(sum(r.status != "unknown" for r in results) / len(texts), 4),
                    "rss_mb": round(rss_mb(), 1),
                }
            )
            print(rows[-1], flush=True)
        del gaz
        gc.collect()
    out["throughput"] = rows


def run_quality(args, out: dict, locations: list[str]) -> None:
    from jaxssm.locations.gazetteer import GazetteerNormalizer

    rows = []
    pairs = labelled_pairs(args.data)
    for population in args.populations:
        gaz = GazetteerNormalizer(min_population=population)
        results = gaz.normalize(locations)
        statuses = Counter(r.status for r in results)

        answers = gaz.normalize([text for text, _ in pairs])
        misses = [
            (text, label_code(label, gaz), a.country)
            for (text, label), a in zip(pairs, answers, strict=True)
            if a.country != label_code(label, gaz)
        ]
        rows.append(
            {
                "min_population": population,
                "stargazer_rows": len(locations),
                "coverage": round(1 - statuses["unknown"] / len(locations), 4),
                "statuses": dict(statuses),
                "labelled_rows": len(pairs),
                "labelled_accuracy": round(1 - len(misses) / len(pairs), 4),
                "labelled_misses": misses,
            }
        )
        print(rows[-1], flush=True)
        del gaz
        gc.collect()
    out["quality"] = rows


def print_table(out: dict) -> None:
    print("\n| min pop | build 1st s | build 2nd s | names | RSS growth MB | repeated rows/s"
          " | perturbed rows/s (keys/s) | coverage | labelled acc |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|")
    for population in sorted({r["min_population"] for r in out.get("build", [])}):
        builds = [r for r in out["build"] if r["min_population"] == population]
        speed = {
            r["input"]: r for r in out.get("throughput", []) if r["min_population"] == population
        }
        quality = next((r for r in out.get("quality", []) if r["min_population"] == population), {})
        rep, per = speed.get("repeated", {}), speed.get("perturbed", {})
        print(
            f"| {population} | {builds[0]['seconds']} | {builds[-1]['seconds']} |"
            f" {builds[0]['names']:,} | {builds[0]['rss_growth_mb']} |"
            f" {rep.get('rows_per_s', '-'):,} | {per.get('rows_per_s', '-'):,}"
            f" ({per.get('keys_per_s', '-'):,}) | {quality.get('coverage', '-')} |"
            f" {quality.get('labelled_accuracy', '-')} |"
        )
    print(f"peak RSS of the whole run: {peak_rss_mb():.0f} MB (includes jax, imported by jaxssm)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sections", default="build,throughput,quality")
    parser.add_argument("--populations", default="5000,15000")
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--out", type=Path, default=HERE / "output" / "locations_gazetteer.json")
    args = parser.parse_args()
    args.populations = [int(p) for p in args.populations.split(",")]
    sections = args.sections.split(",")
    import jaxssm.locations.gazetteer  # noqa: F401  (imports jax; keep it out of the timings)

    out: dict = {
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "args": {k: str(v) for k, v in vars(args).items()},
        "rss_after_imports_mb": round(rss_mb(), 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    locations = stargazer_locations(args.data)
    if "build" in sections:
        run_build(args, out)
    if "throughput" in sections:
        run_throughput(args, out, locations)
    if "quality" in sections:
        run_quality(args, out, locations)
    args.out.write_text(json.dumps(out, indent=2, ensure_ascii=False, default=str))
    print_table(out)
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
