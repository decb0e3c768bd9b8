r"""Tomorrow's budget split: Thompson sampling over the ROAS posterior, with floors and caps.

**Probability of being best.** With posterior draws $\rho^{(d)}_a$ of each ad set's ROAS,

$$\pi_a = P\big(\rho_a = \max_b \rho_b\big) \approx \frac1D \sum_{d=1}^D
  \mathbb 1\big[a = \arg\max_b \rho^{(d)}_b\big].$$

**Thompson sampling** (``rule="thompson"``, the default) places each unit of budget by one
posterior draw: it takes the split that would be best if draw $d$ were the truth, and averages
over draws,

$$s_a = \frac1D \sum_{d=1}^D s^\star_a\big(\rho^{(d)}\big), \qquad
  s^\star(\rho) = \text{floors } \ell \text{, then the rest to the highest } \rho_a
  \text{ in turn, each up to its cap } h_a.$$

Without floors and caps, $s^\star(\rho)$ puts everything on $\arg\max_a \rho_a$ and $s_a = \pi_a$:
the share *is* the probability of being best. With a floor only, $s_a = \ell_a + (1 - \sum_b
\ell_b)\,\pi_a$. With caps it gives the budget a capped best ad set cannot take to the ad sets
most likely to be next best (a split proportional to $\pi_a$ would spread it over ad sets that
are all unlikely to be *the* best, and keep paying for it: linear regret in the replay).

**The proportional rule** (``rule="proportional"``) allocates in proportion to $\pi_a^\gamma$
(``power`` $\gamma \ge 0$), clipped into the floors and caps:

$$s_a = \min\big(h_a, \max(\ell_a, t\, \pi_a^\gamma)\big), \qquad
  t \text{ such that } \textstyle\sum_a s_a = 1$$

($t$ by bisection; $\sum_a s_a$ is non-decreasing in $t$), so ad sets inside their bounds keep the
ratios of their weights; $\gamma = 1$ is "proportional to the probability of being best",
$\gamma < 1$ smoother (more exploration), $\gamma = 0$ the even split. If every ad set with
weight reaches its cap, the rest is split evenly among the others.

**Floors and caps.** $\ell_a$ is the minimum exploration share, $h_a$ the smaller of a maximum
share and a maximum budget over $B$; they must allow $\sum_a s_a = 1$ (else ValueError). Budgets
are $s_a B$ and sum to $B$.

**Expected revenue.** A split $b$ (budgets) earns, in expectation given the parameters,
$\sum_a b_a \rho_a$ (constant returns to spend within the range of the data: tomorrow's ROAS of an
ad set does not depend on its budget); its posterior draws give the mean and interval under the
recommended and the current split, and the gain between them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd

from jaxrev.roas.draws import RoasDraws, interval, roas_summary

# --------------------------------------------------------------------------------------------
# Pure functions of arrays (leading axes are batches, e.g. seeds of a replay)
# --------------------------------------------------------------------------------------------


def prob_best(draws: np.ndarray) -> np.ndarray:
    """``(..., draws, adsets)`` -> ``(..., adsets)``: the fraction of draws in which each ad
    set has the largest value."""
    draws = np.asarray(draws)
    best = np.argmax(draws, axis=-1)
    num = draws.shape[-1]
    onehot = best[..., None] == np.arange(num)
    return onehot.mean(axis=-2)


def share_bounds(
    num_adsets: int,
    budget: float = 1.0,
    min_share: float | np.ndarray = 0.0,
    max_share: float | np.ndarray = 1.0,
    max_budget: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Floors and caps as shares, ``(num_adsets,)`` each; raises ValueError if no split can
    satisfy them (floors above caps, floors summing above 1, caps summing below 1)."""
    lo = np.broadcast_to(np.asarray(min_share, float), (num_adsets,)).copy()
    hi = np.broadcast_to(np.asarray(max_share, float), (num_adsets,)).copy()
    if max_budget is not None:
        cap = np.asarray(max_budget, float) / budget
        hi = np.minimum(hi, np.where(np.isnan(cap), np.inf, cap))
    hi = np.minimum(hi, 1.0)
    if (lo < 0).any() or (hi < 0).any():
        raise ValueError("floors and caps must be >= 0")
    if (lo > hi + 1e-12).any():
        bad = np.flatnonzero(lo > hi + 1e-12)
        raise ValueError(
            f"the minimum share is above the cap for {len(bad)} ad set(s) (first: position "
            f"{bad[0]}: floor {lo[bad[0]]:.4g} > cap {hi[bad[0]]:.4g})"
        )
    if lo.sum() > 1 + 1e-9:
        raise ValueError(
            f"the minimum shares sum to {lo.sum():.4g} > 1 ({num_adsets} ad sets × floor): "
            "lower the minimum share"
        )
    if hi.sum() < 1 - 1e-9:
        raise ValueError(
            f"the caps sum to {hi.sum() * budget:.6g} < the budget {budget:.6g}: raise the caps "
            "or lower the budget"
        )
    return lo, hi


def constrained_shares(weights: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    r"""Shares $\min(h, \max(\ell, t w))$ summing to 1 (see the module docstring), over the
    last axis; ``weights >= 0``. Bounds must be feasible (:func:`share_bounds`)."""
    w = np.asarray(weights, float)
    lo = np.broadcast_to(lo, w.shape).astype(float)
    hi = np.broadcast_to(hi, w.shape).astype(float)
    active = w > 0
    reach = np.where(active, hi, lo).sum(-1)
    s = _proportional_fill(np.where(active, w, 0.0), lo, hi)
    short = reach < 1 - 1e-12  # every weighted ad set capped: share the rest evenly
    if short.any():
        rest = (~active & (hi > lo)).astype(float)
        s2 = _proportional_fill(rest, np.where(active, hi, lo), hi)
        s = np.where(short[..., None], s2, s)
    return s


def _proportional_fill(w, lo, hi, iterations: int = 200):
    """Solve sum(clip(t w, lo, hi)) = 1 for t by bisection (where solvable)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        t_hi = np.where(w > 0, hi / w, 0.0).max(-1) * 2 + 1.0
    t_lo = np.zeros_like(t_hi)
    for _ in range(iterations):
        t = 0.5 * (t_lo + t_hi)
        total = np.clip(t[..., None] * w, lo, hi).sum(-1)
        above = total > 1
        t_hi = np.where(above, t, t_hi)
        t_lo = np.where(above, t_lo, t)
    s = np.clip(0.5 * (t_lo + t_hi)[..., None] * w, lo, hi)
    free = (s > lo) & (s < hi)
    residual = 1 - s.sum(-1, keepdims=True)
    free_total = np.where(free, s, 0.0).sum(-1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = np.where(free_total > 0, 1 + residual / free_total, 1.0)
    return np.where(free, s * scale, s)


def thompson_shares(
    draws: np.ndarray, lo: np.ndarray | float = 0.0, hi: np.ndarray | float = 1.0
) -> np.ndarray:
    """Thompson sampling under floors and caps: the best split of each draw
    (:func:`greedy_shares`), averaged over draws; ``(..., draws, adsets)`` -> ``(..., adsets)``.
    Equals :func:`prob_best` without floors and caps."""
    return greedy_shares(draws, lo, hi).mean(axis=-2)


def proportional_shares(
    draws: np.ndarray,
    power: float = 1.0,
    lo: np.ndarray | float = 0.0,
    hi: np.ndarray | float = 1.0,
) -> np.ndarray:
    r"""Shares $\propto \pi_a^\gamma$ clipped into floors and caps
    (:func:`constrained_shares`), from ``(..., draws, adsets)``."""
    if not power >= 0:
        raise ValueError(f"power must be >= 0, got {power}")
    return constrained_shares(prob_best(draws) ** power, lo, hi)


def shares_by_rule(
    draws: np.ndarray,
    rule: Literal["thompson", "proportional"] = "thompson",
    power: float = 1.0,
    lo: np.ndarray | float = 0.0,
    hi: np.ndarray | float = 1.0,
) -> np.ndarray:
    """Dispatch to :func:`thompson_shares` or :func:`proportional_shares`."""
    if rule == "thompson":
        if power != 1.0:
            raise ValueError("power applies to rule='proportional' (Thompson sampling has none)")
        return thompson_shares(draws, lo, hi)
    if rule == "proportional":
        return proportional_shares(draws, power, lo, hi)
    raise ValueError(f"rule must be 'thompson' or 'proportional', got {rule!r}")


def greedy_shares(values: np.ndarray, lo: np.ndarray | float, hi: np.ndarray | float) -> np.ndarray:
    """Floors to every ad set, then the rest to the highest ``values`` in turn, each up to its cap
    (the best split when ``values`` are the true ROAS: the oracle; with posterior means: greedy).
    Over the last axis."""
    v = np.asarray(values, float)
    lo = np.broadcast_to(lo, v.shape).astype(float)
    hi = np.broadcast_to(hi, v.shape).astype(float)
    order = np.argsort(-v, axis=-1, kind="stable")
    room = np.take_along_axis(hi - lo, order, -1)
    left = 1 - lo.sum(-1, keepdims=True)
    before = np.cumsum(room, -1) - room
    extra_sorted = np.clip(left - before, 0.0, room)
    extra = np.empty_like(extra_sorted)
    np.put_along_axis(extra, order, extra_sorted, -1)
    return lo + extra


def split_revenue(roas: np.ndarray, budgets: np.ndarray) -> np.ndarray:
    """``(..., draws, adsets)`` ROAS draws and ``(..., adsets)`` budgets -> ``(..., draws)``
    draws of the expected revenue $\\sum_a b_a \\rho_a$."""
    return np.einsum("...da,...a->...d", roas, np.asarray(budgets, float))


# --------------------------------------------------------------------------------------------
# The recommendation
# --------------------------------------------------------------------------------------------


@dataclass
class Allocation:
    """A recommended split of ``budget`` and how it compares with the current one.

    Attributes:
        table: one row per ad set: ``prob_best``, ``share``, ``budget``, ``current_share``,
            ``current_budget``, ``expected_revenue`` (budget × mean ROAS), and the ROAS summary
            (conversions per spend, revenue per conversion, ROAS: mean and interval).
        totals: expected revenue under the recommended and current splits (mean, interval) and
            the gain (mean, interval, probability > 0).
        settings: the rule's parameters.
        revenue_draws: ``(draws,)`` expected-revenue draws for ``recommended`` and ``current``.
    """

    table: pd.DataFrame
    totals: dict
    settings: dict
    revenue_draws: dict = field(repr=False)

    def summary_text(self) -> str:
        t = self.totals
        p = round(100 * self.settings["prob"])

        def fmt(name):
            return f"{t[name]['mean']:,.0f} [{t[name]['low']:,.0f}, {t[name]['high']:,.0f}]"

        return (
            f"budget {self.settings['budget']:,.2f}: expected revenue (mean [{p}% interval]) "
            f"recommended {fmt('recommended')}, current {fmt('current')}; gain {fmt('gain')}, "
            f"P(gain > 0) = {t['gain']['prob_positive']:.2f}"
        )


def allocate(
    roas: RoasDraws,
    budget: float,
    current: np.ndarray | None = None,
    *,
    rule: Literal["thompson", "proportional"] = "thompson",
    power: float = 1.0,
    min_share: float | np.ndarray = 0.0,
    max_share: float | np.ndarray = 1.0,
    max_budget: np.ndarray | None = None,
    prob: float = 0.9,
) -> Allocation:
    """Recommend tomorrow's split of ``budget`` by Thompson sampling over ROAS draws.

    Args:
        roas: :class:`~jaxrev.roas.draws.RoasDraws` (from :func:`~jaxrev.roas.draws.roas_draws`).
        budget: tomorrow's total budget $B$.
        current: the current split, as amounts per ad set on any scale (rescaled to $B$), or
            None for an even split.
        rule: ``"thompson"`` (each draw's best split, averaged) or ``"proportional"`` (shares
            $\\propto \\pi_a^\\gamma$ clipped into the bounds); see the module docstring.
        power: $\\gamma$ of the proportional rule (1: proportional to $\\pi_a$; < 1 smoother).
        min_share: minimum exploration share per ad set (scalar or per ad set).
        max_share: maximum share per ad set; ``max_budget``: maximum amount per ad set (NaN: none).
        prob: probability of the reported intervals.

    Example:
        >>> result = allocate(roas, 10_000, current=last_spend, min_share=0.01)  # doctest: +SKIP
        >>> result.table[["adset", "prob_best", "budget"]]  # doctest: +SKIP
    """
    if not budget > 0:
        raise ValueError(f"budget must be > 0, got {budget}")
    num = len(roas.adsets)
    lo, hi = share_bounds(num, budget, min_share, max_share, max_budget)
    p_best = prob_best(roas.roas)
    shares = shares_by_rule(roas.roas, rule, power, lo, hi)
    if current is None:
        current_share = np.full(num, 1.0 / num)
    else:
        current = np.asarray(current, float)
        if current.shape != (num,) or (current < 0).any() or not np.isfinite(current).all():
            raise ValueError(f"current split must be {num} non-negative amounts")
        total = current.sum()
        current_share = current / total if total > 0 else np.full(num, 1.0 / num)
    recommended = split_revenue(roas.roas, shares * budget)
    now = split_revenue(roas.roas, current_share * budget)
    gain = recommended - now

    def describe(x):
        lo_, hi_ = interval(x, prob)
        return {"mean": float(x.mean()), "low": float(lo_), "high": float(hi_)}

    totals = {
        "recommended": describe(recommended),
        "current": describe(now),
        "gain": {**describe(gain), "prob_positive": float((gain > 0).mean())},
    }
    table = roas_summary(roas, prob)
    table.insert(2, "prob_best", p_best)
    table.insert(3, "share", shares)
    table.insert(4, "budget", shares * budget)
    table.insert(5, "current_share", current_share)
    table.insert(6, "current_budget", current_share * budget)
    table.insert(7, "expected_revenue", shares * budget * roas.roas.mean(axis=0))
    settings = {
        "budget": float(budget),
        "rule": rule,
        "power": float(power),
        "min_share": np.asarray(min_share).tolist(),
        "max_share": np.asarray(max_share).tolist(),
        "prob": prob,
        "num_draws": int(roas.roas.shape[0]),
    }
    return Allocation(table, totals, settings, {"recommended": recommended, "current": now})


def plot_allocation(allocation: Allocation, top: int = 30):
    """ROAS (mean and interval) and current vs recommended budgets of the ``top`` ad sets by
    recommended or current budget."""
    import matplotlib.pyplot as plt

    t = allocation.table
    key = np.maximum(t["budget"], t["current_budget"])
    rows = t.loc[key.sort_values(ascending=False).index[:top]].iloc[::-1]
    y = np.arange(len(rows))
    labels = [f"{a} ({c})" for a, c in zip(rows["adset"], rows["campaign"], strict=True)]
    lo_col, hi_col = (c for c in t.columns if c.startswith("roas_q"))
    fig, (left, right) = plt.subplots(
        1, 2, figsize=(12, max(3.5, 0.28 * len(rows) + 1.5)), sharey=True
    )
    left.errorbar(
        rows["roas_mean"],
        y,
        xerr=[rows["roas_mean"] - rows[lo_col], rows[hi_col] - rows["roas_mean"]],
        fmt="o",
        color="#1f77b4",
        ms=4,
        capsize=2,
    )
    left.set_yticks(y, labels, fontsize=7)
    p = round(100 * allocation.settings["prob"])
    left.set_xlabel(f"ROAS (revenue per unit spend): mean and {p}% interval")
    left.axvline(1.0, color="grey", lw=0.8, ls=":")
    h = 0.4
    right.barh(y + h / 2, rows["current_budget"], height=h, color="#bbbbbb", label="current")
    right.barh(y - h / 2, rows["budget"], height=h, color="#2ca02c", label="recommended")
    ends = np.maximum(rows["budget"], rows["current_budget"])
    for yi, pb, end in zip(y, rows["prob_best"], ends, strict=True):
        if pb > 0:
            right.annotate(f"P(best) {pb:.2g}", (end, yi), xytext=(4, -3),
                           textcoords="offset points", fontsize=6)  # fmt: skip
    right.set_xlim(0, 1.15 * float(ends.max()))
    right.set_xlabel("budget")
    right.legend(fontsize=8, loc="lower right")
    tot = allocation.totals
    fig.suptitle(
        f"Budget {allocation.settings['budget']:,.0f}: expected revenue "
        f"{tot['recommended']['mean']:,.0f} (recommended) vs {tot['current']['mean']:,.0f} "
        f"(current); P(gain > 0) = {tot['gain']['prob_positive']:.2f}"
        + (f" — top {top} of {len(t)} ad sets" if len(t) > top else ""),
        fontsize=10,
    )
    fig.tight_layout()
    return fig


__all__ = [
    "Allocation",
    "allocate",
    "constrained_shares",
    "greedy_shares",
    "plot_allocation",
    "prob_best",
    "proportional_shares",
    "share_bounds",
    "shares_by_rule",
    "split_revenue",
    "thompson_shares",
]
