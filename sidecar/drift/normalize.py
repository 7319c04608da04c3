"""Normalisation of latency by what explains it: prompt length and in-flight load.

TTFT grows with the prompt (prefill) and with queueing (in-flight streams); ITL grows with load.
A detector on raw TTFT pages on every burst of long prompts. We fit, on the baseline window,

    expected = a + b * prompt_tokens + c * inflight        (b = 0 for ITL)

by least absolute deviations (a median regression, robust to the heavy tail, by iteratively
reweighted least squares), and feed the detector `value * reference / expected`: a latency in
seconds "at the baseline's median prompt and load". Floors and p95s stay in seconds.

Covariates are kept as a small reservoir per bucket (Algorithm R with a seeded LCG, so replays are
deterministic) rather than every sample: ~32 points per minute is plenty for three coefficients.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

Point = tuple[float, float, float]  # (value, prompt_tokens, inflight)

MIN_FIT_POINTS = 200
_IRLS_ROUNDS = 12


@dataclass(frozen=True, slots=True)
class LoadModel:
    a: float
    b: float
    c: float
    prompt_median: float
    inflight_median: float
    # expected latency at the median prompt and load; computed once (normalize runs per sample)
    reference: float = field(init=False, compare=False)

    def __post_init__(self) -> None:
        reference = self.a + self.b * self.prompt_median + self.c * self.inflight_median
        object.__setattr__(self, "reference", reference)

    def normalize(self, value: float, prompt_tokens: float | None, inflight: float | None) -> float:
        p = self.prompt_median if prompt_tokens is None else prompt_tokens
        n = self.inflight_median if inflight is None else inflight
        ref = self.reference
        # A floor on `expected` keeps a bad covariate (0 tokens, negative load) from exploding r.
        expected = max(self.a + self.b * p + self.c * n, 0.2 * ref)
        return value * ref / expected


def fit(points: list[Point], *, use_prompt: bool) -> LoadModel | None:
    """Median regression of value on the covariates; None if the data cannot support one."""
    if len(points) < MIN_FIT_POINTS:
        return None
    prompts = sorted(p for _, p, _ in points)
    loads = sorted(n for _, _, n in points)
    p_med, n_med = prompts[len(prompts) // 2], loads[len(loads) // 2]
    cols = [0, 1, 2] if use_prompt else [0, 2]
    weights = [1.0] * len(points)
    coef = [0.0, 0.0, 0.0]
    for _ in range(_IRLS_ROUNDS):
        solved = _weighted_lstsq(points, weights, cols)
        if solved is None:
            return None
        coef = solved
        scale = _median([abs(v - _predict(coef, p, n)) for v, p, n in points]) or 1e-9
        weights = [1.0 / max(abs(v - _predict(coef, p, n)), 1e-3 * scale) for v, p, n in points]
    a, b, c = coef
    # Negative slopes are noise (latency does not fall with load): drop the term and refit.
    if b < 0 or c < 0:
        kept = [i for i in cols if i == 0 or coef[i] >= 0]
        solved = _weighted_lstsq(points, weights, kept)
        if solved is None:
            return None
        a, b, c = solved
    model = LoadModel(a, max(b, 0.0), max(c, 0.0), p_med, n_med)
    if not math.isfinite(model.reference) or model.reference <= 0:
        return None
    return model


def _predict(coef: list[float], p: float, n: float) -> float:
    return coef[0] + coef[1] * p + coef[2] * n


def _median(xs: list[float]) -> float:
    xs = sorted(xs)
    return xs[len(xs) // 2] if xs else 0.0


def _weighted_lstsq(
    points: list[Point], weights: list[float], cols: list[int]
) -> list[float] | None:
    """Solve the weighted normal equations for the chosen columns of (1, p, n)."""
    k = len(cols)
    ata = [[0.0] * k for _ in range(k)]
    atb = [0.0] * k
    for (v, p, n), w in zip(points, weights, strict=True):
        row = (1.0, p, n)
        x = [row[c] for c in cols]
        for i in range(k):
            wx = w * x[i]
            atb[i] += wx * v
            for j in range(k):
                ata[i][j] += wx * x[j]
    sol = _solve(ata, atb)
    if sol is None:
        return None
    out = [0.0, 0.0, 0.0]
    for c, s in zip(cols, sol, strict=True):
        out[c] = s
    return out


def _solve(m: list[list[float]], y: list[float]) -> list[float] | None:
    """Gaussian elimination with partial pivoting; None when singular (a constant covariate)."""
    k = len(y)
    a = [[*row, rhs] for row, rhs in zip(m, y, strict=True)]
    for col in range(k):
        pivot = max(range(col, k), key=lambda r: abs(a[r][col]))
        if abs(a[pivot][col]) < 1e-12 * max(1.0, abs(a[col][col])):
            return None
        a[col], a[pivot] = a[pivot], a[col]
        for r in range(k):
            if r != col:
                f = a[r][col] / a[col][col]
                a[r] = [x - f * z for x, z in zip(a[r], a[col], strict=True)]
    return [a[i][k] / a[i][i] for i in range(k)]


class CovariateHistory:
    """A bounded reservoir of (value, prompt, inflight) per bucket, for fitting on a window."""

    def __init__(self, bucket_seconds: float, history_seconds: float, per_bucket: int = 32) -> None:
        self._bucket_seconds = bucket_seconds
        self._keep = max(1, math.ceil(history_seconds / bucket_seconds)) + 1
        self._per_bucket = per_bucket
        self._buckets: deque[tuple[float, list[Point]]] = deque()
        self._seen = 0
        self._state = 0x2545F491
        self._bucket_end = -math.inf  # samples before it go into the newest bucket

    def add(self, t: float, value: float, prompt_tokens: float, inflight: float) -> None:
        if t >= self._bucket_end:
            start = math.floor(t / self._bucket_seconds) * self._bucket_seconds
            if not self._buckets or self._buckets[-1][0] < start:
                self._buckets.append((start, []))
                self._seen = 0
                if len(self._buckets) > self._keep:
                    self._buckets.popleft()
                self._bucket_end = start + self._bucket_seconds
        points = self._buckets[-1][1]
        self._seen += 1
        if len(points) < self._per_bucket:
            points.append((value, prompt_tokens, inflight))
            return
        self._state = (self._state * 6364136223846793005 + 1442695040888963407) % 2**64
        slot = (self._state >> 33) % self._seen
        if slot < self._per_bucket:
            points[slot] = (value, prompt_tokens, inflight)

    def points(self, start: float, end: float) -> list[Point]:
        eps = self._bucket_seconds * 1e-6
        out: list[Point] = []
        for b_start, pts in self._buckets:
            if b_start >= start - eps and b_start + self._bucket_seconds <= end + eps:
                out.extend(pts)
        return out
