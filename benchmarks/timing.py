"""Timing for the benchmarks: variants run in alternating short blocks, so that all of them see the same machine
state (thermal, cache, other load), and each variant's time is the median over its blocks."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping


def alternating_medians(
    calls: Mapping[str, Callable[[], object]],
    blocks: int,
    per_block: int,
    warmup: int = 2,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, float]:
    """Median seconds per call of each of ``calls``, over ``blocks`` rounds of ``per_block`` calls each."""
    for call in calls.values():
        for _ in range(warmup):
            call()
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(blocks):
        for name, call in calls.items():
            start = clock()
            for _ in range(per_block):
                call()
            times[name].append((clock() - start) / per_block)
    return {name: statistics.median(t) for name, t in times.items()}
