"""Every ``bash`` and ``python`` block of README.md runs as written, on bundled data.

A block runs in a working directory that holds the files the README names (``hourly.csv``,
``daily.csv``, ``accounts.parquet``, ``counts.csv``, ``stars.csv``, ...), made from the bundled
data; the blocks of one README section share it and run in order, as a reader would run them
(``jaxrev batch`` resumes what ``fit_accounts`` wrote), and the sections run concurrently. A line
of the form ``<!-- readme-test: ... -->`` just above a block says how the suite runs it:

- ``skip (reason)``: not run (it needs the network, a GPU, a service, or minutes of compute);
- ``replace "OLD" "NEW"``: run with ``OLD`` replaced by ``NEW``, a smaller run of the same code
  (fewer draws, folds or locations; a real argument or flag). ``OLD`` must occur in the block.

``jaxrev`` and ``jaxssm`` are this interpreter's ``python -m jaxrev.cli`` / ``python -m
jaxssm.cli`` (what the installed commands run), with this checkout first on ``PYTHONPATH``.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
LANGUAGES = ("bash", "python")
MARK = re.compile(r"^<!-- readme-test: (?P<what>.*) -->$")
REPLACE = re.compile(r'^replace "(?P<old>(?:[^"\\]|\\.)*)" "(?P<new>(?:[^"\\]|\\.)*)"$')
SKIP = re.compile(r"^skip \((?P<reason>.+)\)$")
BLOCK_TIMEOUT_S = 600
# Sections run at once; each block's time is mostly one core compiling XLA programs.
CONCURRENT_SECTIONS = max(2, min(4, os.cpu_count() or 2))


@dataclass
class Block:
    """One fenced block of the README: where it is, its section, how the suite runs it."""

    line: int  # of the opening fence, 1-based
    section: str
    language: str
    code: str
    skip: str | None = None
    replacements: list[tuple[str, str]] = field(default_factory=list)

    @property
    def id(self) -> str:
        return f"line{self.line}-{self.language}"

    def runnable_code(self) -> str:
        code = self.code
        for old, new in self.replacements:
            assert old in code, f"README line {self.line}: {old!r} is not in the block"
            code = code.replace(old, new)
        return code


def readme_blocks(text: str) -> list[Block]:
    """The fenced blocks of ``text`` in the languages the suite runs, with their marks."""
    lines = text.splitlines()
    blocks, section, i = [], "", 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("#"):
            section = line.lstrip("#").strip()
        if not line.startswith("```"):
            i += 1
            continue
        language, start = line[3:].strip(), i
        end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
        i = end + 1
        if language not in LANGUAGES:
            continue
        block = Block(start + 1, section, language, "\n".join(lines[start + 1 : end]) + "\n")
        j = start - 1
        while j >= 0 and (mark := MARK.match(lines[j])):
            what = mark["what"].strip()
            if skip := SKIP.match(what):
                block.skip = skip["reason"]
            elif replace := REPLACE.match(what):
                unescape = lambda s: s.replace('\\"', '"')  # noqa: E731
                block.replacements.insert(0, (unescape(replace["old"]), unescape(replace["new"])))
            else:
                raise ValueError(f"README line {j + 1}: unknown readme-test mark {what!r}")
            j -= 1
        blocks.append(block)
    return blocks


BLOCKS = readme_blocks(README.read_text(encoding="utf-8"))


def write_inputs(folder: Path) -> None:
    """The input files the README's examples name, from the bundled data (small sizes)."""
    import numpy as np
    import pandas as pd

    from jaxrev.datasets import load_simulated_account
    from jaxrev.datasets.daily import load_simulated_daily
    from jaxssm import random_params, simulate_panel
    from jaxssm.stargazers.report import bundled_path

    folder.mkdir(parents=True, exist_ok=True)
    hourly = load_simulated_account()  # campaign, adset, hour, conversions, revenue
    export = hourly.rename(columns={"adset": "ad_set_id", "campaign": "campaign_id"})
    export.to_csv(folder / "hourly.csv", index=False)  # the README's column names
    load_simulated_daily().to_csv(folder / "daily.csv", index=False)
    # two small accounts in one long table: the bundled account's first and last 120 hours
    hours = np.sort(hourly["hour"].unique())
    accounts = pd.concat(
        [
            hourly[hourly["hour"].isin(hours[:120])].assign(account="shop_a"),
            hourly[hourly["hour"].isin(hours[-120:])].assign(account="shop_b"),
        ]
    )
    accounts.to_parquet(folder / "accounts.parquet", index=False)
    # a wide table of counts (windows x locations) and a held-out table with 5% of its cells;
    # the shapes of tests/jaxssm/fitting's panel, whose compiled programs the session has cached
    params = random_params(0, 8, 1, mean_count=6.0, loading_scale=0.5)
    sim = simulate_panel(1, params, num_windows=20)
    labels = pd.period_range("2021-01", periods=20, freq="M").astype(str)
    counts = pd.DataFrame(sim.counts, columns=[f"loc_{k}" for k in range(8)])
    counts.insert(0, "window", labels)
    scored = np.random.default_rng(0).random(sim.counts.shape) < 0.05
    heldout = counts.copy()
    heldout.iloc[:, 1:] = np.where(scored, sim.counts, np.nan)
    counts.to_csv(folder / "counts.csv", index=False)
    heldout.to_csv(folder / "heldout.csv", index=False)
    # a repository's stargazers: the bundled simulated one (the stargazers notebook's data)
    demo = bundled_path("demo")
    for name in ("stargazers.csv", "stars.csv"):
        (folder / name).write_bytes(demo.read_bytes())
    meta = demo.with_name(demo.name.replace(".csv", ".meta.json"))
    (folder / "stars.meta.json").write_bytes(meta.read_bytes())


def run_block(block: Block, folder: Path, env: dict[str, str]) -> tuple[str, float]:
    """Run ``block`` in ``folder``; returns its output and the CPU seconds it took (its process
    and their children: what it costs the suite whatever else the machine runs). Raises
    AssertionError with the output when it fails."""
    code = block.runnable_code()
    if block.language == "python":
        command = [sys.executable, "-c", code]
    else:
        python = shlex.quote(sys.executable)
        prelude = (
            f'jaxrev() {{ {python} -m jaxrev.cli "$@"; }}\n'
            f'jaxssm() {{ {python} -m jaxssm.cli "$@"; }}\n'
        )
        command = ["bash", "-euo", "pipefail", "-c", prelude + code]
    log = folder / f"readme-line{block.line}.log"
    start = time.perf_counter()
    with open(log, "w+", encoding="utf-8") as out:
        process = subprocess.Popen(command, cwd=folder, env=env, stdout=out, stderr=out)
        timer = threading.Timer(BLOCK_TIMEOUT_S, process.kill)
        timer.start()
        try:
            _, status, usage = os.wait4(process.pid, 0)  # usage includes its children
        finally:
            timer.cancel()
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        output = out.read()
    cpu = usage.ru_utime + usage.ru_stime
    wall = time.perf_counter() - start
    assert process.returncode == 0, (
        f"README line {block.line} ({block.language}) exited {process.returncode} after "
        f"{wall:.0f} s:\n{code}\n--- output ---\n{output[-6000:]}"
    )
    return output, cpu


def run_section(blocks: list[Block], folder: Path, env) -> dict[int, Future]:
    """Run a section's blocks in order in one folder (the first failure fails the rest)."""
    write_inputs(folder)
    results: dict[int, Future] = {}
    failed: BaseException | None = None
    for block in blocks:
        future: Future = Future()
        if failed is None:
            try:
                future.set_result(run_block(block, folder, env))
            except BaseException as err:  # reported by the block's test
                failed = err
                future.set_exception(err)
        else:
            future.set_exception(
                AssertionError(f"not run: an earlier block of this section failed: {failed}")
            )
        results[block.line] = future
    return results


@pytest.fixture(scope="module")
def executed(request, tmp_path_factory, compile_cache) -> dict[int, Future]:
    """Every selected block that is not skipped, started together: sections concurrently, the
    blocks of a section in order. Maps a block's line to the future of ``(output, CPU seconds)``.
    The subprocesses share the session's persistent compilation cache."""
    selected = {
        item.callspec.id
        for item in request.session.items
        if item.module is request.module and hasattr(item, "callspec")
    }
    sections: dict[str, list[Block]] = {}
    for block in BLOCKS:
        if block.id in selected and block.skip is None:
            sections.setdefault(block.section, []).append(block)
    env = dict(os.environ)
    env.update(
        PYTHONPATH=os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])]),
        JAX_PLATFORMS="cpu",
        MPLBACKEND="Agg",
        PYTHONHASHSEED="0",
        XDG_CACHE_HOME=str(tmp_path_factory.mktemp("xdg-cache")),  # not the user's caches
    )
    env.pop("GITHUB_TOKEN", None)
    with ThreadPoolExecutor(max_workers=CONCURRENT_SECTIONS) as pool:
        started = {
            name: pool.submit(run_section, blocks, tmp_path_factory.mktemp("readme"), env)
            for name, blocks in reversed(sections.items())  # jaxssm's, the longest, first
        }
        yield {line: f for future in started.values() for line, f in _flatten(future).items()}


def _flatten(section: Future) -> dict[int, Future]:
    """The per-block futures of a section, or one failure for each if the section crashed."""
    try:
        return section.result()
    except BaseException as err:  # e.g. writing the inputs failed
        failure: Future = Future()
        failure.set_exception(err)
        return {block.line: failure for block in BLOCKS}


def test_the_readme_has_blocks_to_run():
    assert len([b for b in BLOCKS if b.skip is None]) >= 10
    for block in BLOCKS:
        block.runnable_code()  # every replacement still matches its block


@pytest.mark.slow
@pytest.mark.parametrize("block", BLOCKS, ids=[b.id for b in BLOCKS])
def test_readme_block_runs(block: Block, executed):
    if block.skip is not None:
        pytest.skip(f"README line {block.line}: {block.skip}")
    output, cpu = executed[block.line].result()
    print(f"README line {block.line}: {cpu:.1f} s of CPU\n{output[-2000:]}")
