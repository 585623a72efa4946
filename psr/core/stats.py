"""Intervals for the accuracies psr reports: a few lines, no scipy dependency for one formula."""

from __future__ import annotations


def wilson(k: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of the proportion k/n (95% for z=1.96), in percent.

    Wilson rather than the normal approximation: it stays inside [0, 100] and is sensible at the
    accuracies near 0% or 100% that tiny models and small samples produce."""
    if n <= 0:
        return 0.0, 100.0
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * (p * (1 - p) / n + z * z / (4 * n * n)) ** 0.5 / d
    return 100 * max(0.0, c - h), 100 * min(1.0, c + h)
