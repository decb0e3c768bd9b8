"""The cascade: which strings reach the LLM, how two answers merge, nothing lost on an LLM error.

Stub backends keep these tests about the cascade's own logic; the real gazetteer and the LLM
client are tested in their own files.
"""

from __future__ import annotations

import pytest

from jaxssm.locations import LocationResult, fold
from jaxssm.locations.cascade import CascadeNormalizer, merge


def ok(text, country, source="gazetteer", candidates=()):
    return LocationResult(text, country, status="ok", source=source, candidates=candidates)


class StubGazetteer:
    """Knows a few strings; "springfield" is several places."""

    table = {
        "berlin": ok("berlin", "DE"),
        "springfield": LocationResult("springfield", "US", status="multi", candidates=("AU",)),
        "earth": LocationResult("earth", status="non_geo"),
    }

    def normalize(self, texts):
        return [self.table.get(fold(t), LocationResult(t or "")).with_text(t or "") for t in texts]


class StubLLM:
    """Records what it is asked; answers from a dict; optionally fails after answering."""

    def __init__(self, answers, fail_after=None):
        self.answers, self.fail_after, self.asked = answers, fail_after, []
        self.on_progress = None

    async def anormalize(self, texts):
        self.asked.extend(texts)
        out = [
            self.answers.get(fold(t), LocationResult(t, status="unknown", source="llm:stub"))
            for t in texts
        ]
        if self.fail_after is not None:
            out = [r if i < self.fail_after else LocationResult(r.text, status="failed")
                   for i, r in enumerate(out)]  # fmt: skip
            err = RuntimeError("401 from the server")
            err.results = out
            raise err
        return out


def test_only_unsettled_distinct_strings_reach_the_llm():
    llm = StubLLM({"wakanda forever": ok("Wakanda forever", "KE", "llm:stub")})
    cascade = CascadeNormalizer(StubGazetteer(), llm)
    texts = ["Berlin", "Wakanda forever", "wakanda FOREVER ", "Earth", "", None, "Springfield"]
    rows = cascade.normalize(texts)
    assert llm.asked == ["Wakanda forever", "Springfield"]  # one per folded key, never ""
    assert [r.text for r in rows] == ["Berlin", "Wakanda forever", "wakanda FOREVER ", "Earth",
                                      "", "", "Springfield"]  # fmt: skip
    assert [r.country for r in rows] == ["DE", "KE", "KE", None, None, None, "US"]
    assert [r.status for r in rows] == ["ok", "ok", "ok", "non_geo", "unknown", "unknown", "multi"]


@pytest.mark.parametrize(
    "gazetteer, llm, country, status, candidates",
    [
        (LocationResult("x"), ok("x", "FR", "llm:m"), "FR", "ok", ()),  # gazetteer knew nothing
        (ok("x", "DE"), LocationResult("x", status="failed"), "DE", "ok", ()),
        (LocationResult("x", "US", status="multi", candidates=("AU",)), ok("x", "AU", "llm:m"),
         "AU", "ok", ("US",)),  # the LLM settles the ambiguity among the gazetteer's places
        (LocationResult("x", "US", status="multi", candidates=("AU",)), ok("x", "CA", "llm:m"),
         "US", "multi", ("AU", "CA")),  # a disagreement stays multi, with both sides
        (LocationResult("x", "US", status="multi", candidates=("AU",)),
         LocationResult("x", status="unknown"), "US", "multi", ("AU",)),
    ],
)  # fmt: skip
def test_merge(gazetteer, llm, country, status, candidates):
    out = merge(gazetteer, llm)
    assert (out.country, out.status, out.candidates) == (country, status, candidates)


def test_llm_error_keeps_everything_resolved():
    llm = StubLLM({"atlantis": ok("Atlantis", "GR", "llm:stub")}, fail_after=1)
    cascade = CascadeNormalizer(StubGazetteer(), llm)
    with pytest.raises(RuntimeError, match="401") as info:
        cascade.normalize(["Berlin", "Atlantis", "Gondor", "Berlin"])
    rows = info.value.results
    assert [r.country for r in rows] == ["DE", "GR", None, "DE"]
    # Gondor: the gazetteer's answer, with the LLM's status (a rerun asks again)
    assert [r.status for r in rows] == ["ok", "ok", "failed", "ok"]


def test_progress_counts_gazetteer_and_llm_together():
    seen = []
    llm = StubLLM({})
    CascadeNormalizer(StubGazetteer(), llm, on_progress=seen.append).normalize(["Berlin", "Mordor"])
    assert seen[0].total == 2 and seen[0].by_gazetteer == 1 and seen[0].done == 1
