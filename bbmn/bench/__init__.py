"""Benchmarks that print throughput (molecules/s) and peak memory; run them on an idle machine."""

from __future__ import annotations

import resource


def peak_rss_mb(children: bool = False) -> float:
    """Peak resident memory of this process (or of its largest finished child), in MB."""
    who = resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF
    return resource.getrusage(who).ru_maxrss / 1024.0
