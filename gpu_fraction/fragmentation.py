"""Fragmentation-aware placement ("fragmentation gradient descent").

After "Beware of Fragmentation" (USENIX ATC'23): a GPU's free capacity is *fragmented* for a task
size when that task cannot fit in it (a free 3/8 is fragmented for tasks needing 1/2, not for
those needing 1/4; a partly used GPU is fragmented for whole-GPU training jobs). The expected
fragmentation of a GPU is the share of its free memory that the expected mix of task sizes
cannot use. Each request goes where that measure grows least, so the free capacity that remains
is the capacity future requests can actually use.

The task mix starts from the standard sizes and is learnt from recent requests.
"""

from __future__ import annotations

import math
from collections import deque
from fractions import Fraction

from .model import STANDARD_SIZES

#: A GPU's free state as the allocator indexes it: (total MiB, free MiB, free compute %).
GpuState = tuple[int, int, int]


def slice_fits(state: GpuState, fraction: Fraction) -> bool:
    """Whether a task of this standard size (memory and compute derived from it) fits."""
    total, free_mem, free_compute = state
    if fraction >= 1:
        return free_mem == total and free_compute == 100
    need_mem = max(1, math.floor(fraction * total))
    need_compute = max(1, math.floor(fraction * 100))
    return free_mem >= need_mem and free_compute >= need_compute


def fragmentation(state: GpuState, mix: tuple[tuple[Fraction, float], ...]) -> float:
    """Expected share of this GPU that tasks drawn from ``mix`` cannot use (0 .. 1)."""
    total, free_mem, _ = state
    if free_mem <= 0:
        return 0.0
    free_share = free_mem / total
    unusable = 0.0
    for size, weight in mix:
        if not slice_fits(state, size):
            unusable += weight
    return unusable * free_share


class TaskMix:
    """The expected distribution of request sizes, learnt from a window of recent requests.

    ``version`` changes whenever the weights change, so callers can cache scores per version.
    Weights blend a uniform prior over the standard sizes with the window's counts, so a new
    cluster starts with a sensible mix and a stable one follows what its users ask for.
    Not locked: the allocator calls it under its own lock.
    """

    def __init__(
        self,
        sizes: tuple[Fraction, ...] = STANDARD_SIZES,
        window: int = 2048,
        refresh_every: int = 256,
        prior_weight: float = 0.2,
    ) -> None:
        self._sizes = tuple(sizes)
        # Sizes are kept as (numerator, denominator): hashing a Fraction is slow.
        self._window: deque[tuple[int, int]] = deque(maxlen=window)
        self._counts: dict[tuple[int, int], int] = {}
        self._refresh_every = refresh_every
        self._prior_weight = prior_weight
        self._since_refresh = 0
        self.version = 0
        self.weights: tuple[tuple[Fraction, float], ...] = self._compute()

    def record(self, size: tuple[int, int]) -> None:
        """Note one request's size ``(numerator, denominator)``; weights are recomputed every
        ``refresh_every`` requests."""
        counts = self._counts
        if len(self._window) == self._window.maxlen:
            oldest = self._window[0]
            counts[oldest] -= 1
        self._window.append(size)
        counts[size] = counts.get(size, 0) + 1
        self._since_refresh += 1
        if self._since_refresh >= self._refresh_every:
            self._since_refresh = 0
            weights = self._compute()
            if weights != self.weights:
                self.weights = weights
                self.version += 1

    def _compute(self) -> tuple[tuple[Fraction, float], ...]:
        if not self._window:
            return tuple((size, round(1.0 / len(self._sizes), 2)) for size in self._sizes)
        weights = {size: self._prior_weight / len(self._sizes) for size in self._sizes}
        share = (1.0 - self._prior_weight) / len(self._window)
        for (numerator, denominator), count in self._counts.items():
            if count:
                size = Fraction(numerator, denominator)
                weights[size] = weights.get(size, 0.0) + share * count
        # Rounded so that small drifts in the window do not invalidate every cached score.
        return tuple(sorted((size, round(w, 2)) for size, w in weights.items()))
