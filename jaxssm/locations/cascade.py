"""Gazetteer first, the LLM only for what it left unresolved; and the factory the CLI uses.

The cascade sends the LLM the distinct (folded) strings the gazetteer answered ``unknown`` or
``multi`` — on real stargazer strings a few percent — so a 19k-row table costs a handful of
requests instead of hundreds.

A string the LLM could not answer (``failed``: its batch exhausted its attempts; ``pending``: the
run stopped first) keeps the gazetteer's answer with the LLM's status, so the output shows
which rows a rerun will ask again. Ctrl-C in :meth:`CascadeNormalizer.normalize` raises
:class:`~jaxssm.locations.base.NormalizeInterrupted` with every row.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from jaxssm.locations.base import (
    UNANSWERED,
    LocationNormalizer,
    LocationResult,
    NormalizeInterrupted,
    Progress,
    as_texts,
    dedupe,
)
from jaxssm.locations.gazetteer import default_gazetteer
from jaxssm.locations.llm import LLMNormalizer

ASK_LLM_FOR = ("unknown", "multi")


@dataclass(frozen=True)
class _Plan:
    """A cascade run after the gazetteer: distinct keys, their answers, those left to the LLM."""

    texts: list[str | None]
    keys: list[str]
    inverse: list[int]
    first_text: list[str | None]
    answers: list[LocationResult]
    todo: list[int]  # indices into keys


def merge(gazetteer: LocationResult, llm: LocationResult) -> LocationResult:
    """One answer from the gazetteer's and the LLM's for the same string.

    - The LLM knows nothing: the gazetteer's answer stands.
    - The LLM did not answer (``failed``, ``pending``): the gazetteer's answer, with the LLM's
      status unless the gazetteer had settled it (``ok``, ``non_geo``).
    - The gazetteer knew nothing: the LLM's answer.
    - The gazetteer saw several places: the LLM's pick if it is one of them (status ``ok``,
      the others kept as candidates); a pick outside them is a disagreement: ``multi`` with
      both sides in the candidates, the gazetteer's first place first.
    """
    if llm.status in UNANSWERED:
        settled = gazetteer.status in ("ok", "non_geo")
        return gazetteer if settled else replace(gazetteer, status=llm.status)
    if llm.status == "unknown":
        return gazetteer
    if gazetteer.status == "unknown":
        return llm
    if gazetteer.status == "multi":
        seen = (gazetteer.country, *gazetteer.candidates)
        if llm.status == "non_geo":
            return gazetteer
        if llm.country in seen:
            others = tuple(c for c in seen if c and c != llm.country)
            return replace(llm, candidates=others)
        extra = tuple(c for c in (llm.country, *llm.candidates) if c and c not in seen)
        return replace(gazetteer, candidates=(*gazetteer.candidates, *extra))
    return gazetteer


class CascadeNormalizer:
    """Gazetteer for everything, then the LLM for the distinct strings it could not settle.

    Args:
        gazetteer: the offline normalizer (default :func:`default_gazetteer`).
        llm: any :class:`LocationNormalizer`, normally
            :class:`~jaxssm.locations.llm.LLMNormalizer`; None makes it the gazetteer alone.
        ask_llm_for: gazetteer statuses passed on to the LLM.
        on_progress: called with a :class:`Progress` as work completes (unique strings).
    """

    def __init__(
        self,
        gazetteer: LocationNormalizer | None = None,
        llm: LocationNormalizer | None = None,
        *,
        ask_llm_for: Sequence[str] = ASK_LLM_FOR,
        on_progress: Callable[[Progress], None] | None = None,
    ):
        if gazetteer is None:
            gazetteer = default_gazetteer()
        self.gazetteer = gazetteer
        self.llm = llm
        self.ask_llm_for = tuple(ask_llm_for)
        self.on_progress = on_progress

    def normalize(self, texts: Sequence[str | None]) -> list[LocationResult]:
        """One answer per text; Ctrl-C raises :class:`NormalizeInterrupted` with every row (the
        LLM's answers so far, ``pending`` for the strings it did not reach)."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            plan = self._plan(texts)
            try:
                return asyncio.run(self._ask_llm(plan))
            except KeyboardInterrupt:
                answers = getattr(self.llm, "answers", None) or {}
                partial = [
                    answers.get(plan.keys[k], LocationResult("", status="pending"))
                    for k in plan.todo
                ]
                raise NormalizeInterrupted(self._rows(plan, partial)) from None
        raise RuntimeError("normalize() was called inside a running event loop: await anormalize()")

    async def anormalize(self, texts: Sequence[str | None]) -> list[LocationResult]:
        return await self._ask_llm(self._plan(texts))

    def _plan(self, texts: Sequence[str | None]) -> _Plan:
        """The gazetteer's answers per distinct key, and the keys to ask the LLM about."""
        texts = as_texts(texts)
        keys, inverse = dedupe(texts)
        first_text: list[str | None] = [None] * len(keys)
        for text, k in zip(texts, inverse, strict=True):
            if first_text[k] is None:
                first_text[k] = text
        answers = list(self.gazetteer.normalize(first_text))
        todo = [
            k for k, (key, r) in enumerate(zip(keys, answers, strict=True))
            if key and r.status in self.ask_llm_for
        ]  # fmt: skip
        self._report(Progress(total=len(keys), done=len(keys) - len(todo),
                              by_gazetteer=len(keys) - len(todo)))  # fmt: skip
        return _Plan(texts, keys, inverse, first_text, answers, todo)

    def _rows(self, plan: _Plan, llm_answers: Sequence[LocationResult]) -> list[LocationResult]:
        answers = list(plan.answers)
        for k, answer in zip(plan.todo, llm_answers, strict=True):
            answers[k] = merge(answers[k], answer)
        return [
            answers[k].with_text(text or "")
            for text, k in zip(plan.texts, plan.inverse, strict=True)
        ]

    async def _ask_llm(self, plan: _Plan) -> list[LocationResult]:
        if self.llm is None or not plan.todo:
            return self._rows(plan, [])
        keys = plan.keys
        error: Exception | None = None
        forward = self._forward_progress(len(keys), len(keys) - len(plan.todo))
        previous = getattr(self.llm, "on_progress", None)
        if forward is not None and hasattr(self.llm, "on_progress"):
            self.llm.on_progress = forward
        try:
            llm_answers = await self.llm.anormalize([plan.first_text[k] for k in plan.todo])
        except Exception as err:  # a permanent LLM error: keep what was resolved
            partial = getattr(err, "results", None)
            if partial is None:
                raise
            llm_answers, error = partial, err
        finally:
            if forward is not None and hasattr(self.llm, "on_progress"):
                self.llm.on_progress = previous
        rows = self._rows(plan, llm_answers)
        if error is not None:
            error.results = rows
            raise error
        return rows

    def _report(self, progress: Progress) -> None:
        if self.on_progress is not None:
            self.on_progress(progress)

    def _forward_progress(self, total: int, by_gazetteer: int):
        if self.on_progress is None:
            return None

        def forward(p: Progress) -> None:
            self.on_progress(replace(p, total=total, done=by_gazetteer + p.done,
                                     by_gazetteer=by_gazetteer))  # fmt: skip

        return forward


def make_normalizer(
    backend: str = "auto",
    *,
    base_url: str | None = None,
    model: str | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    **llm_options,
) -> LocationNormalizer:
    """The normalizer a user asked for.

    ``backend``: ``"gazetteer"``; ``"llm"`` (every string to the LLM); ``"cascade"``; or
    ``"auto"`` — the cascade when ``base_url`` is given, else the gazetteer alone (no socket is
    ever opened without a ``base_url``). ``llm_options`` go to
    :class:`~jaxssm.locations.llm.LLMNormalizer` (``rpm``, ``tpm``, ``cache``, ...).
    """
    if backend not in ("auto", "gazetteer", "llm", "cascade"):
        raise ValueError(f"backend must be auto, gazetteer, llm or cascade, not {backend!r}")
    if backend == "auto":
        backend = "cascade" if base_url else "gazetteer"
    if backend == "gazetteer":
        return default_gazetteer()
    if not base_url or not model:
        raise ValueError(f"the {backend} backend needs an LLM base_url and a model")
    if backend == "llm":
        return LLMNormalizer(base_url, model, on_progress=on_progress, **llm_options)
    return CascadeNormalizer(
        llm=LLMNormalizer(base_url, model, **llm_options), on_progress=on_progress
    )
