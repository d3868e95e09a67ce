"""The task mix placement measures fragmentation against, learnt per GPU type.

After "Beware of Fragmentation" (USENIX ATC'23): free GPU capacity is *fragmented* for a task
when that task cannot use it (see :mod:`gpu_fraction.node_fragmentation` for the measure). What
counts as "a task" is the mix of shapes users actually ask for: share or GPU count, and the
CPU and memory the pod needs, since a GPU on a node without CPU to spare is as unusable as one
with too little memory left.

The mix is learnt per GPU type from every request that could have used that type, refused ones
included (a refused 8-GPU job is exactly the demand the cluster should make room for).
"""

from __future__ import annotations

from collections import deque

from .model import STANDARD_SIZES

#: A task shape: (numerator, denominator) of the share or GPU count, explicit per-GPU memory
#: in MiB (0: derived from the share), guaranteed compute %, pod CPU millicores, pod MiB.
Shape = tuple[int, int, int, int, int, int]

#: A GPU's free state as the allocator indexes it: (total MiB, free MiB, free compute %).
GpuState = tuple[int, int, int]


def bare_shape(numerator: int, denominator: int) -> Shape:
    """A shape with only a size: default memory and compute, no CPU or memory for the pod."""
    whole = numerator >= denominator
    compute = 100 if whole else max(1, numerator * 100 // denominator)
    return (numerator, denominator, 0, compute, 0, 0)


PRIOR_SHAPES: tuple[Shape, ...] = tuple(
    bare_shape(s.numerator, s.denominator) for s in STANDARD_SIZES
)


class TaskMix:
    """The expected distribution of task shapes of one GPU type, from a window of requests.

    Weights are ``(1 - prior_weight)`` spread over the window by count, plus ``prior_weight``
    spread evenly over the standard sizes and every shape seen in the window, so a shape that
    is rare but costly to refuse (an 8-GPU job: a whole node) keeps a say in where small ones
    go. ``version`` changes when the weights move by more than ``tolerance``, so callers can
    cache scores per version without re-scoring on every drift.

    The window, prior and tolerance were chosen on ``benchmarks/packing.py`` (full size, seed
    42, % of GPU capacity allocated at 130% asked, sharing / multigpu variants): window 2048
    with prior 0.2 gave 86.19 / 98.29; prior 0.35 85.83 / 98.31, prior 0.5 85.99 / 98.13;
    window 512 85.86 / 98.31, window 8192 86.19 / 98.29 (no better, slower to follow a change
    of workload); tolerance 0.01 instead of 0.05: sharing 85.89, base 96.51 vs 96.38, i.e.
    within the run-to-run spread of these figures (about 0.3 points), while re-scoring more
    often. Checked again with the stranded-GPU term (seed 42, sharing / multigpu): prior 0.1
    86.27 / 98.55, 0.2 86.79 / 98.53, 0.35 87.16 / 98.55 (but seed 7 sharing 88.03 against
    88.19 with 0.2), window 8192 86.79 / 98.53: no setting stands out, 0.2 and 2048 stay.
    Not locked: the allocator holds its lock.
    """

    def __init__(
        self,
        window: int | None = None,
        refresh_every: int = 256,
        prior_weight: float | None = None,
        max_shapes: int = 48,
        tolerance: float | None = None,
    ) -> None:
        self._window: deque[Shape] = deque(maxlen=window or DEFAULT_WINDOW)
        self._counts: dict[Shape, int] = {}
        self._refresh_every = refresh_every
        self._soonest = min(refresh_every, 16)  # the fewest records between two refreshes
        self._prior_weight = DEFAULT_PRIOR if prior_weight is None else prior_weight
        self._max_shapes = max_shapes
        self._tolerance = DEFAULT_TOLERANCE if tolerance is None else tolerance
        self._since_refresh = 0
        self.version = 0
        self.weights: tuple[tuple[Shape, float], ...] = self._compute()

    def record(self, shape: Shape | tuple[int, int]) -> None:
        """Note one request's shape (or a bare ``(numerator, denominator)`` size)."""
        if len(shape) == 2:
            shape = bare_shape(*shape)
        counts = self._counts
        window = self._window
        if len(window) == window.maxlen:
            oldest = window[0]
            left = counts[oldest] - 1
            if left:
                counts[oldest] = left
            else:
                del counts[oldest]
        window.append(shape)  # type: ignore[arg-type]
        counts[shape] = counts.get(shape, 0) + 1  # type: ignore[index]
        since = self._since_refresh = self._since_refresh + 1
        # The first requests move the mix most: refresh after 16, then ever less often, until
        # every refresh_every requests. (Not at once: a mix learnt from two requests would
        # drown the prior, e.g. break into a whole node for a 2-GPU job because no 4-GPU job
        # was seen yet.) The first test spares every reserve the min and max.
        if since >= self._soonest and since >= min(self._refresh_every, max(16, len(window) // 2)):
            self._since_refresh = 0
            self._refresh()

    def _refresh(self) -> None:
        weights = self._compute()
        old = dict(self.weights)
        new = dict(weights)
        if old.keys() != new.keys() or any(
            abs(w - old[s]) > self._tolerance for s, w in new.items()
        ):
            self.weights = weights
            self.version += 1

    def _compute(self) -> tuple[tuple[Shape, float], ...]:
        if not self._window:
            return tuple((s, 1.0 / len(PRIOR_SHAPES)) for s in PRIOR_SHAPES)
        shapes = set(PRIOR_SHAPES) | self._counts.keys()
        prior = self._prior_weight / len(shapes)
        share = (1.0 - self._prior_weight) / len(self._window)
        weights = {s: prior + share * self._counts.get(s, 0) for s in shapes}
        kept = sorted(weights.items(), key=lambda item: -item[1])[: self._max_shapes]
        total = sum(w for _, w in kept)
        return tuple(sorted((s, w / total) for s, w in kept))


#: Chosen by measurement on benchmarks/packing.py, see :class:`TaskMix`.
DEFAULT_WINDOW = 2048
DEFAULT_PRIOR = 0.2
DEFAULT_TOLERANCE = 0.05
