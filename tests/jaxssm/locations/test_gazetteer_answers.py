"""The gazetteer's answers on 5,901 strings are pinned (``data/gazetteer_answers.json``).

The answers were computed before the curated tables moved from Python literals to
``jaxssm/locations/data/*.json`` (``data/make_gazetteer_answers.py``); a change of tables or
rules that changes an answer must regenerate the file on purpose.
"""

from __future__ import annotations

import json
from pathlib import Path

from jaxssm.locations import default_gazetteer

ANSWERS = Path(__file__).parent / "data" / "gazetteer_answers.json"


def test_answers_unchanged():
    with open(ANSWERS, encoding="utf-8") as f:
        pinned = json.load(f)
    fields = pinned["fields"][1:]
    texts = [row[0] for row in pinned["rows"]]
    assert len(texts) >= 5000
    results = default_gazetteer().normalize(texts)
    changed = [
        (row, [result.to_dict()[f] for f in fields])
        for row, result in zip(pinned["rows"], results, strict=True)
        if row[1:] != [result.to_dict()[f] for f in fields]
    ]
    assert not changed, changed[:20]
