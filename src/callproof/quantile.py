"""The one quantile formula: linear interpolation between order statistics.

The reports' latency percentiles (:func:`callproof.probe.stats.percentile`), the adaptive
watchdog's and the hedge's quantiles (:mod:`callproof.resilience.watchdog`) and the event-loop
lag figures (:mod:`callproof.looplag`) all come from :func:`quantile`: numpy's default
("linear", R's type 7, :func:`statistics.quantiles` with ``method="inclusive"``), so the median
of [1, 2] is 1.5 and q = 0 and q = 1 are the minimum and the maximum. Pure, no dependencies.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["quantile"]


def quantile(sorted_values: Sequence[float], q: float) -> float | None:
    """The ``q`` quantile (0 <= q <= 1) of already sorted values, linearly interpolated
    between the order statistics around rank ``q * (n - 1)``; ``None`` when there are none."""
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"q must be within 0..1, got {q}")
    if not sorted_values:
        return None
    rank = (len(sorted_values) - 1) * q
    lower = math.floor(rank)
    upper = min(lower + 1, len(sorted_values) - 1)
    fraction = rank - lower
    return sorted_values[lower] + (sorted_values[upper] - sorted_values[lower]) * fraction
