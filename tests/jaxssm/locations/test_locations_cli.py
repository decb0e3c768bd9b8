"""`jaxssm locations` end to end: offline on real stargazer strings (no socket opened), and the
cascade against the loopback OpenAI-compatible server, with the cache making a rerun free."""

from __future__ import annotations

import socket

import pandas as pd
import pytest
from fake_openai import NON_GEO, FakeOpenAI
from shared_data_location import shared_data_dir

from jaxssm.cli import main

STARGAZERS = shared_data_dir() / "mobilitydb_stargazers_locations_unlabeled.csv"


@pytest.fixture
def no_sockets(monkeypatch):
    """Any attempt to connect anywhere fails the test."""

    def refuse(self, *args, **kwargs):
        raise AssertionError(f"a socket was opened: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)


@pytest.mark.skipif(not STARGAZERS.exists(), reason=f"needs {STARGAZERS} (not shipped)")
def test_offline_cli_on_real_stargazer_strings(tmp_path, no_sockets, capsys):
    out = tmp_path / "out.csv"
    assert main(["locations", str(STARGAZERS), "--column", "location", "--out", str(out),
                 "--quiet"]) == 0  # fmt: skip
    frame = pd.read_csv(out, keep_default_na=False, na_values=[""])
    source = pd.read_csv(STARGAZERS, keep_default_na=False, na_values=[""])
    assert len(frame) == len(source) and list(frame.columns[: source.shape[1]]) == list(
        source.columns
    )
    located = frame[frame.location.notna()]
    assert len(located) == 261
    assert (located.status != "unknown").mean() >= 0.97  # 98.9 % when written
    assert set(frame.loc[frame.location.isna(), "status"]) == {"unknown"}
    assert frame.source.eq("gazetteer").all()
    printed = capsys.readouterr().out
    assert "402 rows" in printed and "top countries" in printed


def test_cli_names_the_file_and_missing_column(tmp_path, capsys):
    path = tmp_path / "users.csv"
    pd.DataFrame({"user": ["a"], "loc": ["Berlin"]}).to_csv(path, index=False)
    assert main(["locations", str(path), "--out", str(tmp_path / "o.csv")]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and "'location'" in err and "'loc'" in err


def test_cascade_cli_asks_only_the_rest_and_caches(tmp_path, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    path = tmp_path / "users.csv"
    texts = ["Berlin", "berlin ", "Minas Tirith", "Qwertyland", "NA", "", "Asdfstan", "Tokyo"]
    pd.DataFrame({"user": list("abcdefgh"), "location": texts}).to_csv(path, index=False)
    answers = {"qwertyland": ("NZ", None, "Matamata"), "asdfstan": NON_GEO}
    with FakeOpenAI(answers) as server:
        args = ["locations", str(path), "--out", str(tmp_path / "o.csv"), "--quiet",
                "--llm-base-url", server.base_url, "--model", "fake",
                "--cache", str(tmp_path / "cache.sqlite")]  # fmt: skip
        assert main(args) == 0
        sent = server.texts_sent()
        # Only what the gazetteer could not settle, once each: not Berlin, Tokyo or "NA" (Namibia).
        assert sorted(sent) == ["Asdfstan", "Minas Tirith", "Qwertyland"]
        assert all(n == 1 for n in sent.values())
        first = len(server.requests)
        assert main(args) == 0
        assert len(server.requests) == first  # the rerun is answered from the cache
    frame = pd.read_csv(tmp_path / "o.csv", keep_default_na=False, na_values=[""])
    got = dict(zip(frame.user, frame.country.fillna(""), strict=True))
    assert got == {"a": "DE", "b": "DE", "c": "", "d": "NZ", "e": "NA", "f": "", "g": "",
                   "h": "JP"}  # fmt: skip
    assert list(frame.status) == ["ok", "ok", "unknown", "ok", "ok", "unknown", "non_geo", "ok"]
    assert frame.source[3] == "cache" and frame.source[0] == "gazetteer"


def test_a_run_killed_halfway_resumes_with_only_the_rest(tmp_path, monkeypatch):
    """SIGKILL in the middle of an LLM run: the batches answered before the kill are on disk,
    the rerun asks for the rest only (at most the batch in flight is asked twice)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    texts = [f"Zyx place {k}" for k in range(24)]  # nothing the gazetteer knows
    path = tmp_path / "users.csv"
    users = [f"u{k}" for k in range(24)]
    pd.DataFrame({"user": users, "location": texts}).to_csv(path, index=False)
    cache = tmp_path / "cache.sqlite"
    answers = {t: ("NZ", None, None) for t in texts}
    with FakeOpenAI(answers, latency=0.2) as server:
        args = ["locations", str(path), "--out", str(tmp_path / "o.csv"), "--quiet",
                "--backend", "llm", "--llm-base-url", server.base_url, "--model", "fake",
                "--batch-size", "2", "--max-concurrency", "1", "--cache", str(cache)]  # fmt: skip
        env = {**os.environ, "JAX_PLATFORMS": "cpu"}
        child = subprocess.Popen([sys.executable, "-m", "jaxssm.cli", *args], env=env)
        deadline = time.monotonic() + 60
        while len(server.requests) < 5 and time.monotonic() < deadline:
            time.sleep(0.02)
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        assert child.returncode == -signal.SIGKILL and not (tmp_path / "o.csv").exists()
        first = server.texts_sent()
        assert 8 <= sum(first.values()) < len(texts)  # killed halfway

        from jaxssm.locations.cache import LocationCache

        with LocationCache(cache) as db:
            stored = db.count()
        assert stored >= sum(first.values()) - 2  # all but the batch in flight were committed

        server.reset()
        assert main(args) == 0
        second = server.texts_sent()
        assert set(first) | set(second) == set(texts)  # nothing lost
        assert sum(second.values()) == len(texts) - stored  # only the rest is asked
        assert len(set(first) & set(second)) <= 2  # repeated: at most the batch in flight
    frame = pd.read_csv(tmp_path / "o.csv", keep_default_na=False, na_values=[""])
    assert (frame.country == "NZ").all()
