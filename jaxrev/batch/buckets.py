"""Shape buckets: many accounts, few compiled programs.

Every account is padded to a *bucket shape* — observations, ad sets and campaigns each rounded up
to a power of two (with minimums) — so accounts of similar size share one compiled program. Padded
observations are masked in the likelihood; padded ad sets and campaigns get no observations and
only their standard-normal prior (numerically benign, ignored in the results). A bucket's accounts
are stacked on a leading axis and fitted with ``jit(vmap(...))``; "ghost" lanes that fill the batch
up to its compiled size repeat a real account and are discarded.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from jaxrev.data import RevenueArrays, pad_observations


class BucketShape(NamedTuple):
    """Padded sizes of one bucket."""

    num_obs: int
    num_adsets: int
    num_campaigns: int

    def __str__(self) -> str:
        return f"{self.num_obs}x{self.num_adsets}x{self.num_campaigns}"


def next_pow2(n: int, minimum: int = 1) -> int:
    """The smallest power of two >= max(n, minimum)."""
    n = max(int(n), int(minimum), 1)
    return 1 << (n - 1).bit_length()


def bucket_shape(
    arrays: RevenueArrays, min_obs: int = 16, min_adsets: int = 8, min_campaigns: int = 2
) -> BucketShape:
    """The bucket an account falls in: each size rounded up to a power of two."""
    return BucketShape(
        next_pow2(arrays.conversions.shape[-1], min_obs),
        next_pow2(arrays.adset_mask.shape[-1], min_adsets),
        next_pow2(arrays.campaign_mask.shape[-1], min_campaigns),
    )


def pad_account(arrays: RevenueArrays, shape: BucketShape) -> RevenueArrays:
    """Pad one account's arrays to ``shape`` (observations masked, extra ad sets in campaign 0
    with no observations, extra campaigns empty)."""
    arrays = pad_observations(arrays, shape.num_obs)
    extra_adsets = shape.num_adsets - arrays.adset_mask.shape[-1]
    extra_campaigns = shape.num_campaigns - arrays.campaign_mask.shape[-1]
    if extra_adsets < 0 or extra_campaigns < 0:
        raise ValueError(f"account does not fit bucket {shape}")
    return arrays._replace(
        adset_campaign=np.concatenate(
            [np.asarray(arrays.adset_campaign), np.zeros(extra_adsets, np.int32)]
        ),
        adset_mask=np.concatenate([np.asarray(arrays.adset_mask), np.zeros(extra_adsets, bool)]),
        campaign_mask=np.concatenate(
            [np.asarray(arrays.campaign_mask), np.zeros(extra_campaigns, bool)]
        ),
    )


def stack_lanes(lanes: list[RevenueArrays], batch_size: int) -> RevenueArrays:
    """Stack padded accounts on a leading axis of ``batch_size``, filling the tail with copies
    of the first account (ghost lanes)."""
    if not lanes or len(lanes) > batch_size:
        raise ValueError(f"need 1..{batch_size} lanes, got {len(lanes)}")
    filled = list(lanes) + [lanes[0]] * (batch_size - len(lanes))
    return RevenueArrays(
        *(np.stack([np.asarray(x) for x in field]) for field in zip(*filled, strict=True))
    )


def batch_cap(shape: BucketShape, max_batch: int, max_batch_obs: int) -> int:
    """Largest power-of-two batch with at most ``max_batch`` accounts and at most
    ``max_batch_obs`` padded observations in all (bounds device memory per bucket)."""
    cap = max(1, min(max_batch, max_batch_obs // shape.num_obs))
    return 1 << (cap.bit_length() - 1)


def batch_size_for(count: int, cap: int, multiple: int = 1) -> int:
    """Compiled batch size for ``count`` lanes: a power of two >= count (at most ``cap``),
    and a multiple of ``multiple`` (the number of devices the batch is sharded over)."""
    size = min(next_pow2(count), cap)
    return -(-size // multiple) * multiple


def plan_buckets(
    shapes: list[BucketShape], sizes: list[int], max_batch: int, max_batch_obs: int
) -> list[tuple[BucketShape, list[int]]]:
    """Group item indices by bucket shape and split each group into batches within the cap.

    Items are ordered by shape and then by observed size, so a batch holds similar accounts.
    Returns ``(shape, indices)`` pairs in a deterministic order.
    """
    by_shape: dict[BucketShape, list[int]] = {}
    for i, shape in enumerate(shapes):
        by_shape.setdefault(shape, []).append(i)
    plan = []
    for shape in sorted(by_shape):
        members = sorted(by_shape[shape], key=lambda i: (sizes[i], i))
        cap = batch_cap(shape, max_batch, max_batch_obs)
        for start in range(0, len(members), cap):
            plan.append((shape, members[start : start + cap]))
    return plan


def padding_efficiency(real_obs: int, shape: BucketShape, lanes: int) -> float:
    """Fraction of the compiled observation slots that hold real observations."""
    return real_obs / (shape.num_obs * lanes)
