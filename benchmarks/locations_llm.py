"""The LLM location normalizer's throttling, measured at a loopback OpenAI-compatible server.

For each scenario, :class:`~jaxssm.locations.llm.LLMNormalizer` resolves synthetic location
strings against ``tests/jaxssm/locations/fake_openai.py`` (answers instantly after ``latency``)
and the server's arrival log is compared with the configured limits:

* ``rpm / tpm achieved``: requests and estimated tokens (prompt estimate + ``max_tokens``, what
  the limiter admits) per minute from the limiter's start to the last arrival;
* ``peak prefix``: the largest ratio, over arrivals k, of the amount arrived by k to
  ``limit * (t_k - t0) / 60`` (the limiter's guarantee is <= 1: no run prefix goes faster than
  the limit); ``usage tpm``: tokens per minute as the server counts them (its ``usage``, ~4 bytes
  per token, no ``max_tokens`` reservation, so well below the estimate);
* ``in flight``: the server's peak of concurrent requests against the cap.

Scenarios: both limits as in the issue (rpm 600, tpm 60,000: tokens bind), tokens bind, requests
bind, and the concurrency cap binds (no rate limits, a slow server). About 90 s in all.

Usage::

    python benchmarks/locations_llm.py            # writes benchmarks/output/locations_llm.json
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE.parent / "tests" / "jaxssm" / "locations")]
sys.path.append(str(HERE.parent / "tests"))  # loopback_http (after the repository: tests/jaxssm)

from fake_openai import FakeOpenAI  # noqa: E402

from jaxssm.locations.limiter import estimate_tokens  # noqa: E402
from jaxssm.locations.llm import LLMNormalizer  # noqa: E402

SCENARIOS = [
    # name, strings, batch, rpm, tpm, concurrency, server latency (s)
    ("issue: rpm 600, tpm 60k", 500, 50, 600, 60_000, 4, 0.05),
    ("tokens bind", 2_000, 50, 6_000, 300_000, 4, 0.05),
    ("requests bind", 2_000, 10, 600, 3_000_000, 4, 0.05),
    ("concurrency binds", 2_000, 10, None, None, 4, 0.25),
]


def request_tokens(body: dict) -> int:
    """The client's own estimate of a request, recomputed from what the server received."""
    return estimate_tokens(body["messages"]) + body["max_tokens"]


def peak_prefix(times: list[float], amounts: list[float], t0: float, per_minute: float) -> float:
    """max_k (amount arrived by k) / (per_minute * (t_k - t0) / 60)."""
    total, worst = 0.0, 0.0
    for t, a in sorted(zip(times, amounts, strict=True)):
        total += a
        worst = max(worst, total / (per_minute * max(t - t0, 1e-9) / 60))
    return worst


def run(name, n, batch, rpm, tpm, cap, latency) -> dict:
    texts = [f"Town {k}, Region {k % 37}" for k in range(n)]
    with FakeOpenAI(lambda text: "DE", latency=latency) as server:
        llm = LLMNormalizer(
            server.base_url,
            "fake-model",
            api_key="",
            rpm=rpm,
            tpm=tpm,
            max_concurrency=cap,
            batch_size=batch,
        )
        wall = time.perf_counter()
        out = llm.normalize(texts)
        wall = time.perf_counter() - wall
        seen = server.requests
        in_flight = server.max_in_flight
    assert all(r.country == "DE" for r in out)
    t0 = llm.limiter.started_at
    times = [s.t for s in seen]
    tokens = [request_tokens(s.body) for s in seen]
    usage = sum(s.usage.get("total_tokens", 0) for s in seen)
    span = max(times) - t0
    row = {
        "scenario": name,
        "strings": n,
        "batch": batch,
        "requests": len(seen),
        "rpm_limit": rpm,
        "rpm_achieved": len(seen) * 60 / span,
        "rpm_peak_prefix": peak_prefix(times, [1] * len(seen), t0, rpm) if rpm else None,
        "tpm_limit": tpm,
        "tpm_achieved": sum(tokens) * 60 / span,
        "tpm_peak_prefix": peak_prefix(times, tokens, t0, tpm) if tpm else None,
        "tpm_usage": usage * 60 / span,
        "max_in_flight": in_flight,
        "concurrency_cap": cap,
        "rate_limited": llm.progress.rate_limited,
        "wall_s": wall,
    }
    assert sum(tokens) == llm.progress.tokens_estimated
    return row


def fmt(value, spec=",.0f") -> str:
    return "-" if value is None else format(value, spec)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=HERE / "output" / "locations_llm.json")
    args = parser.parse_args()
    rows = []
    for scenario in SCENARIOS:
        rows.append(run(*scenario))
        print(f"  {scenario[0]}: {rows[-1]['wall_s']:.1f} s", file=sys.stderr)
    header = (
        "| scenario | requests | rpm limit | rpm achieved | peak prefix | tpm limit "
        "| tpm achieved (est.) | peak prefix | usage tpm | in flight / cap | wall s |"
    )
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for r in rows:
        print(
            f"| {r['scenario']} | {r['requests']} | {fmt(r['rpm_limit'])} | "
            f"{fmt(r['rpm_achieved'])} | {fmt(r['rpm_peak_prefix'], '.3f')} | "
            f"{fmt(r['tpm_limit'])} | {fmt(r['tpm_achieved'])} | "
            f"{fmt(r['tpm_peak_prefix'], '.3f')} | {fmt(r['tpm_usage'])} | "
            f"{r['max_in_flight']} / {r['concurrency_cap']} | {r['wall_s']:.1f} |"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {"machine": platform.platform(), "python": platform.python_version(), "rows": rows},
            indent=2,
        )
    )
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
