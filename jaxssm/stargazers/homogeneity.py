r"""Has the stargazers' geography stayed the same over time? A test of homogeneity for sparse
tables.

The input is an (N windows, m locations) table of counts $X_i(\ell)$ with window totals
$Y_i = \sum_\ell X_i(\ell)$. The null hypothesis is that the shares
$p_i(\ell) = X_i(\ell) / Y_i$ estimate one common distribution $p(\ell)$ for every window $i$
(homogeneity, which for a table has the same conditional null as independence of window and
location). Under it the expected count of a cell is
$E_{i\ell} = Y_i C_\ell / n$ with $C_\ell = \sum_i X_i(\ell)$ and $n = \sum_i Y_i$, and the
statistics are

$$ G^2 = 2 \sum_{i\ell} X_{i\ell} \log\frac{X_{i\ell}}{E_{i\ell}}, \qquad
   X^2 = \sum_{i\ell} \frac{(X_{i\ell} - E_{i\ell})^2}{E_{i\ell}}, $$

with $0 \log 0 = 0$. The textbook reference distribution, $\chi^2$ with $(N-1)(m-1)$ degrees of
freedom, needs most $E_{i\ell} \ge 5$; stargazer tables are mostly zeros and ones, so the p-value
here is Monte Carlo *conditional on both margins*: given the row and column sums, the table is
multivariate hypergeometric under the null whatever $p(\ell)$ is, so drawing $B$ tables with the
observed margins (Patefield's algorithm, ``scipy.stats.random_table``) and counting
$p = (1 + \#\{T^* \ge T\}) / (1 + B)$ gives a valid test at every sample size.

Per location the statistic splits into nonnegative parts, $T = \sum_\ell T_\ell$ (for $G^2$,
$T_\ell = 2\sum_i X_{i\ell}\log(X_{i\ell}/E_{i\ell})$, because
$\sum_i (X_{i\ell} - E_{i\ell}) = 0$), which say *where* the table departs from homogeneity;
a signed trend score (Cochran-Armitage) says *which way* each location's share moved.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, NamedTuple

import numpy as np
import pandas as pd
from jaxtyping import Float, Int
from scipy import stats
from scipy.special import xlogy

from jaxssm.drift import (
    count_frame,
    dropped_sentence,
    format_p,
    merge_rare,
    name_list,
    null_tables,
    random_generator,
)

Table = Int[np.ndarray, "N m"]
Tables = Int[np.ndarray, "*batch N m"]
StatisticKind = Literal["g2", "x2"]

STATISTIC_NAMES: dict[str, str] = {"g2": "G²", "x2": "X²"}
_ALIASES = {
    "g2": "g2", "g-test": "g2", "log-likelihood": "g2", "likelihood-ratio": "g2",
    "x2": "x2", "chi2": "x2", "pearson": "x2",
}  # fmt: skip
_TIE_RTOL = 1e-7  # T* within this relative distance of T counts as a tie (T* >= T)
SPARSE_EXPECTED = 5.0  # Cochran's rule: the chi-square approximation wants E >= 5


class HomogeneityTest(NamedTuple):
    r"""Result of :func:`homogeneity_test`.

    Attributes:
        statistic: the observed $G^2$ or $X^2$ on the table that was tested.
        statistic_name: ``"G²"`` or ``"X²"``.
        p_value: Monte Carlo p-value conditional on both margins,
            $(1 + \#\{T^* \ge T\}) / (1 + B)$; never below $1/(1+B)$.
        num_draws: $B$, the number of tables drawn (0 when there was nothing to test).
        asymptotic_p_value: $P(\chi^2_{df} \ge T)$, for reference only; see ``asymptotic_reliable``.
        df: $(N-1)(m-1)$ of the tested table.
        sparse_fraction: fraction of expected counts $E_{i\ell}$ below 5.
        asymptotic_reliable: Cochran's rule: at most 20% of $E_{i\ell} < 5$ and none below 1.
        cramers_v: $V = \sqrt{X^2 / (n (\min(N, m) - 1))}$, in [0, 1]; 0 is no change.
        cramers_v_null: mean of $V$ over the tables drawn under the null. Sparse tables have
            $V > 0$ by chance alone; compare ``cramers_v`` with this, not with 0.
        num_windows: N after dropping empty windows.
        num_locations: m after dropping empty locations and merging rare ones.
        total_count: n, the table's total.
        dropped_windows: labels of windows with no counts (removed before testing).
        dropped_locations: labels of locations with no counts (removed before testing).
        merged_locations: labels merged into ``other_label`` because their total was below
            ``min_total``.
        min_total: the threshold below which locations were merged (0: none).
        other_label: the label of the merged column (present only if something was merged).
        contributions: one row per tested location (index ``location``), sorted by ``excess``:
            ``total`` $C_\ell$; ``share`` $C_\ell / n$; ``share_early`` and ``share_late``, its
            pooled share in the first and the last half of the windows, and ``change`` (late -
            early); ``trend_z``, the standardised trend score of its counts against the window
            position (positive: its share grew; exact null moments), ``trend_p`` its two-sided
            normal-approximation p-value (rough for locations with a handful of counts) and
            ``trend_q`` the Benjamini-Hochberg adjusted one; ``contribution`` $T_\ell$ (they sum
            to ``statistic``), ``contribution_null_mean`` $E[T^*_\ell]$ under the null,
            ``excess`` their difference and ``contribution_p``, the Monte Carlo p-value of
            $T_\ell$ alone.
    """

    statistic: float
    statistic_name: str
    p_value: float
    num_draws: int
    asymptotic_p_value: float
    df: int
    sparse_fraction: float
    asymptotic_reliable: bool
    cramers_v: float
    cramers_v_null: float
    num_windows: int
    num_locations: int
    total_count: int
    dropped_windows: tuple
    dropped_locations: tuple
    merged_locations: tuple
    min_total: int
    other_label: str
    contributions: pd.DataFrame

    @property
    def testable(self) -> bool:
        """Whether there were at least two nonempty windows and two locations to compare."""
        return self.num_windows >= 2 and self.num_locations >= 2

    @property
    def monte_carlo_error(self) -> float:
        r"""Standard error of ``p_value`` from drawing finitely many tables,
        $\sqrt{p(1-p)/B}$."""
        if self.num_draws == 0:
            return 0.0
        return float(np.sqrt(self.p_value * (1.0 - self.p_value) / self.num_draws))

    def movers(self, alpha: float = 0.05) -> tuple[list, list]:
        """Locations whose share trended up and down (``trend_q < alpha``), strongest first."""
        c = self.contributions
        significant = c[c["trend_q"] < alpha]
        up = significant[significant["trend_z"] > 0].sort_values("trend_z", ascending=False)
        down = significant[significant["trend_z"] < 0].sort_values("trend_z")
        return list(up.index), list(down.index)

    def verdict(
        self, alpha: float = 0.05, locations: str = "locations", max_movers: int = 3
    ) -> str:
        """A plain-English summary with the numbers behind it.

        Args:
            alpha: the level of the test (and the false discovery rate of the movers).
            locations: the noun for the columns ("countries", "regions").
            max_movers: at most this many locations named per direction.

        Example:
            >>> homogeneity_test(table).verdict(locations="countries")  # doctest: +SKIP
            'The geography changed over time: G² = 412.3 on 36 windows × 40 countries, Monte
            Carlo p = 0.0005 (2,000 tables with the same margins); the chi-square approximation
            is unreliable here (78% of expected counts below 5). ...'
        """
        if not self.testable:
            return (
                f"Cannot test whether the geography changed: {self.num_windows} nonempty "
                f"window(s) × {self.num_locations} {locations} (at least 2 of each needed)."
                + dropped_sentence(self, locations)
            )
        changed = self.p_value <= alpha
        head = (
            "The geography changed over time"
            if changed
            else "No evidence that the geography changed over time"
        )
        none_as_extreme = self.p_value <= 1.0 / (1 + self.num_draws)
        floor = "; none as extreme as the data" if none_as_extreme else ""
        sentence = (
            f"{head}: {self.statistic_name} = {self.statistic:,.1f} on {self.num_windows} windows"
            f" × {self.num_locations} {locations}, Monte Carlo p = {format_p(self.p_value)}"
            f" ({self.num_draws:,} tables with the same margins{floor}); "
        )
        percent = f"{100 * self.sparse_fraction:.0f}% of expected counts below 5"
        if self.asymptotic_reliable:
            sentence += (
                f"the chi-square approximation gives p = {format_p(self.asymptotic_p_value)} "
                f"(df = {self.df:,}; {percent})."
            )
        else:
            sentence += f"the chi-square approximation is unreliable here ({percent})."
        sentence += (
            f" Cramér's V = {self.cramers_v:.3f} against {self.cramers_v_null:.3f} expected"
            " with no change."
        )
        up, down = self.movers(alpha)
        if up or down:
            parts = []
            if up:
                parts.append("grew: " + name_list(up, max_movers))
            if down:
                parts.append("shrank: " + name_list(down, max_movers))
            sentence += (
                " Shares that " + "; ".join(parts) + f" (trend tests, false discovery rate "
                f"{100 * alpha:g}%)."
            )
        else:
            sentence += f" None of the {locations} shows a significant trend in its share."
        return sentence + dropped_sentence(self, locations)


def expected_counts(tables: Tables) -> Float[np.ndarray, "*batch N m"]:
    r"""$E_{i\ell} = Y_i C_\ell / n$, the counts expected under homogeneity given the margins."""
    tables = np.asarray(tables, dtype=float)
    rows = tables.sum(-1, keepdims=True)
    cols = tables.sum(-2, keepdims=True)
    total = rows.sum(-2, keepdims=True)
    return rows * cols / np.where(total > 0, total, 1.0)


def location_contributions(
    tables: Tables, kind: StatisticKind = "g2"
) -> Float[np.ndarray, "*batch m"]:
    r"""The statistic of each table split by location, $T_\ell$, with $\sum_\ell T_\ell = T$.

    $G^2_\ell = 2 \sum_i X_{i\ell} \log(X_{i\ell}/E_{i\ell})$ (the $-(X - E)$ terms of the
    deviance sum to 0 within a column) and
    $X^2_\ell = \sum_i (X_{i\ell} - E_{i\ell})^2 / E_{i\ell}$. Cells with $E = 0$ (an empty
    row or column) add 0. Vectorised over leading axes.
    """
    observed = np.asarray(tables, dtype=float)
    expected = expected_counts(observed)
    positive = expected > 0
    if kind == "g2":
        ratio = np.divide(observed, expected, out=np.ones_like(observed), where=positive)
        return 2.0 * xlogy(observed, ratio).sum(-2)
    if kind == "x2":
        squared = (observed - expected) ** 2
        return np.divide(squared, expected, out=np.zeros_like(observed), where=positive).sum(-2)
    raise ValueError(f"unknown statistic {kind!r}; use 'g2' or 'x2'")


def homogeneity_statistic(
    tables: Tables, kind: StatisticKind = "g2"
) -> Float[np.ndarray, "*batch"]:
    r"""$G^2$ (``kind="g2"``, the likelihood ratio) or Pearson's $X^2$ (``"x2"``) of each table,
    with $0 \log 0 = 0$.

    Example:
        >>> float(homogeneity_statistic(np.array([[3, 0], [0, 3]]), "x2"))
        6.0
    """
    return location_contributions(tables, kind).sum(-1)


def cramers_v(pearson: Float[np.ndarray, "*batch"], total: float, shape: tuple[int, int]):
    r"""Cramér's $V = \sqrt{X^2 / (n (\min(N, m) - 1))}$ from Pearson's $X^2$."""
    k = min(shape) - 1
    if k < 1 or total <= 0:
        return np.zeros_like(np.asarray(pearson, dtype=float))
    return np.sqrt(np.asarray(pearson, dtype=float) / (total * k))


def sample_tables(
    row_totals: Sequence[int],
    col_totals: Sequence[int],
    num_draws: int,
    seed: int | np.random.Generator | None = 0,
) -> Int[np.ndarray, "B N m"]:
    """``num_draws`` tables with exactly these row and column sums, drawn from the null of
    homogeneity (the multivariate hypergeometric law of a table given its margins, via
    Patefield's algorithm in ``scipy.stats.random_table``).

    Example:
        >>> sample_tables([2, 1], [1, 2], 4, seed=0).sum(axis=2)[0].tolist()
        [2, 1]
    """
    rows = np.asarray(row_totals, dtype=np.int64)
    cols = np.asarray(col_totals, dtype=np.int64)
    if num_draws == 0:
        return np.zeros((0, len(rows), len(cols)), dtype=np.int64)
    return np.concatenate(list(null_tables(rows, cols, num_draws, random_generator(seed))))


def merge_rare_locations(
    counts: pd.DataFrame, min_total: int, other: str = "other"
) -> pd.DataFrame:
    """Locations with fewer than ``min_total`` counts in all, summed into one ``other`` column.

    The Monte Carlo test is valid without merging; merging trades the power to see a rare
    location move for a table that is easier to read and a chi-square approximation that is less
    wrong. Locations with no counts at all are left for the test to drop. An existing ``other``
    column is added to, not replaced.

    Example:
        >>> t = pd.DataFrame({"US": [5, 6], "BR": [1, 0], "IN": [0, 1]})
        >>> merge_rare_locations(t, min_total=2).columns.tolist()
        ['US', 'other']
    """
    return merge_rare(count_frame(counts), min_total, other)[0]


def _trend_scores(
    table: Int[np.ndarray, "N m"], positions: Float[np.ndarray, " N"]
) -> Float[np.ndarray, " m"]:
    r"""Cochran-Armitage trend score of each location against the window position $s_i$.

    Given the margins, column $\ell$ is a draw of $C_\ell$ balls without replacement from an urn
    holding $Y_i$ balls of window $i$, so $S_\ell = \sum_i (s_i - \bar s) X_{i\ell}$, with
    $\bar s = \sum_i Y_i s_i / n$, has mean 0 and variance
    $C_\ell (n - C_\ell)/(n - 1) \cdot \sum_i Y_i (s_i - \bar s)^2 / n$; $z_\ell$ is $S_\ell$
    over its standard deviation (0 where that is 0).
    """
    rows = table.sum(1).astype(float)
    cols = table.sum(0).astype(float)
    n = rows.sum()
    centred = positions - rows @ positions / n
    spread = rows @ centred**2 / n
    variance = cols * (n - cols) / max(n - 1.0, 1.0) * spread
    score = centred @ table
    return np.divide(score, np.sqrt(variance), out=np.zeros_like(score), where=variance > 0)


def _shares_by_half(table: Int[np.ndarray, "N m"]) -> tuple[np.ndarray, np.ndarray]:
    half = table.shape[0] // 2
    early = table[:half].sum(0)
    late = table[table.shape[0] - half :].sum(0)
    return early / max(early.sum(), 1), late / max(late.sum(), 1)


def homogeneity_test(
    counts: pd.DataFrame | np.ndarray,
    statistic: str = "g2",
    num_draws: int = 2000,
    seed: int | np.random.Generator | None = 0,
    min_total: int = 0,
    other_label: str = "other",
    window_positions: Sequence[float] | None = None,
) -> HomogeneityTest:
    r"""Test whether every window's location shares $p_i(\ell)$ come from one distribution.

    Windows (rows) and locations (columns) with no counts are dropped first and listed in the
    result; locations with fewer than ``min_total`` counts are then merged into
    ``other_label`` (see :func:`merge_rare_locations`; 0 merges nothing). The p-value is
    Monte Carlo conditional on both margins, exact in distribution for any sparsity; the
    chi-square p-value is reported beside it for reference.

    Args:
        counts: (N windows, m locations) nonnegative integer counts; a DataFrame's index and
            columns label the windows and locations (rows in time order).
        statistic: ``"g2"`` (likelihood ratio, default) or ``"x2"`` (Pearson).
        num_draws: $B$, the number of tables drawn with the observed margins.
        seed: seed or NumPy generator of the draws (the default 0 makes reports reproducible).
        min_total: merge locations with fewer counts than this into one column.
        other_label: the name of that column.
        window_positions: the time of each window for the trend scores (default 0..N-1).

    Returns:
        A :class:`HomogeneityTest`; ``.verdict()`` says it in a sentence.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> table = rng.multinomial(40, [0.5, 0.3, 0.2], size=12)
        >>> homogeneity_test(table, num_draws=199).p_value > 0.05
        True
    """
    kind = _ALIASES.get(statistic.lower())
    if kind is None:
        raise ValueError(f"unknown statistic {statistic!r}; use one of {sorted(_ALIASES)}")
    if num_draws < 1:
        raise ValueError(f"num_draws must be at least 1, got {num_draws}")
    frame = count_frame(counts)
    positions = (
        np.arange(len(frame), dtype=float)
        if window_positions is None
        else np.asarray(window_positions, dtype=float)
    )
    if positions.shape != (len(frame),):
        raise ValueError(f"window_positions needs {len(frame)} values, got {positions.shape}")
    empty_rows = frame.sum(axis=1).to_numpy() == 0
    empty_cols = frame.sum(axis=0).to_numpy() == 0
    dropped_windows = tuple(frame.index[empty_rows])
    dropped_locations = tuple(frame.columns[empty_cols])
    frame = frame.loc[~empty_rows, ~empty_cols]
    positions = positions[~empty_rows]
    frame, merged_locations = merge_rare(frame, min_total, other_label)

    table = frame.to_numpy()
    N, m = table.shape
    n = int(table.sum())
    names = STATISTIC_NAMES[kind]
    common = dict(
        statistic_name=names,
        num_windows=N,
        num_locations=m,
        total_count=n,
        dropped_windows=dropped_windows,
        dropped_locations=dropped_locations,
        merged_locations=merged_locations,
        min_total=int(min_total),
        other_label=other_label,
    )
    if N < 2 or m < 2:  # one table has these margins: nothing varies
        return HomogeneityTest(
            statistic=0.0, p_value=1.0, num_draws=0, asymptotic_p_value=1.0, df=0,
            sparse_fraction=float("nan"), asymptotic_reliable=False, cramers_v=0.0,
            cramers_v_null=0.0, contributions=_contributions_frame(frame, positions),
            **common,
        )  # fmt: skip

    observed_parts = location_contributions(table, kind)
    observed = float(observed_parts.sum())
    observed_pearson = float(homogeneity_statistic(table, "x2"))
    exceed = 0
    part_exceed = np.zeros(m)
    part_sum = np.zeros(m)
    v_null_sum = 0.0
    threshold = observed - _TIE_RTOL * max(1.0, abs(observed))
    part_threshold = observed_parts - _TIE_RTOL * np.maximum(1.0, np.abs(observed_parts))
    for draws in null_tables(table.sum(1), table.sum(0), num_draws, random_generator(seed)):
        parts = location_contributions(draws, kind)
        exceed += int(np.count_nonzero(parts.sum(-1) >= threshold))
        part_exceed += np.count_nonzero(parts >= part_threshold, axis=0)
        part_sum += parts.sum(0)
        pearson = parts.sum(-1) if kind == "x2" else homogeneity_statistic(draws, "x2")
        v_null_sum += float(cramers_v(pearson, n, (N, m)).sum())

    expected = expected_counts(table)
    df = (N - 1) * (m - 1)
    contributions = _contributions_frame(frame, positions)
    contributions["contribution"] = observed_parts
    contributions["contribution_null_mean"] = part_sum / max(num_draws, 1)
    contributions["excess"] = (
        contributions["contribution"] - contributions["contribution_null_mean"]
    )
    contributions["contribution_p"] = (1.0 + part_exceed) / (1.0 + num_draws)
    return HomogeneityTest(
        statistic=observed,
        p_value=(1.0 + exceed) / (1.0 + num_draws),
        num_draws=int(num_draws),
        asymptotic_p_value=float(stats.chi2.sf(observed, df)),
        df=df,
        sparse_fraction=float(np.mean(expected < SPARSE_EXPECTED)),
        asymptotic_reliable=bool(
            np.mean(expected < SPARSE_EXPECTED) <= 0.2 and expected.min() >= 1.0
        ),
        cramers_v=float(cramers_v(observed_pearson, n, (N, m))),
        cramers_v_null=v_null_sum / max(num_draws, 1),
        contributions=contributions.sort_values("excess", ascending=False, kind="stable"),
        **common,
    )


def _contributions_frame(frame: pd.DataFrame, positions: Float[np.ndarray, " N"]) -> pd.DataFrame:
    """The per-location description that needs no draws: totals, shares, trend scores."""
    table = frame.to_numpy()
    totals = table.sum(0)
    early, late = _shares_by_half(table)
    z = (
        _trend_scores(table, positions)
        if table.shape[0] >= 2 and table.sum() > 0
        else np.zeros(table.shape[1])
    )
    p = 2.0 * stats.norm.sf(np.abs(z))
    out = pd.DataFrame(
        {
            "total": totals,
            "share": totals / max(totals.sum(), 1),
            "share_early": early,
            "share_late": late,
            "change": late - early,
            "trend_z": z,
            "trend_p": p,
            "trend_q": stats.false_discovery_control(p) if len(p) else p,
            "contribution": 0.0,
            "contribution_null_mean": 0.0,
            "excess": 0.0,
            "contribution_p": 1.0,
        },
        index=pd.Index(frame.columns, name="location"),
    )
    return out
