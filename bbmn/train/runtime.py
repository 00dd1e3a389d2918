"""Process-level runtime helpers: the allocator settings that make CPU work faster, and the peak
memory a run reports (training, ``bbmn predict``/``embed`` and the benchmarks read it here).

glibc's allocator returns large freed blocks to the kernel and serves each large activation with
a fresh ``mmap``; the page faults that follow cost as much as the arithmetic on the activation
(about 25% of a BatmanNet training step on a 2-core CPU, measured by benchmarks/bench_model.py).
Telling glibc to keep freed memory and to use huge pages removes that cost. The setting is read
when a process starts, so the command re-executes itself once with it.
"""

from __future__ import annotations

import os
import resource
import sys

#: keep freed memory (no trimming, no mmap below 32 MiB) and back the heap with huge pages
MALLOC_TUNABLES = ("glibc.malloc.hugetlb=1:glibc.malloc.mmap_threshold=33554432:"
                   "glibc.malloc.trim_threshold=1073741824")
_FLAG = "BBMN_MALLOC_TUNED"


def reexec_with_malloc_tunables() -> None:
    """Re-execute this command once with :data:`MALLOC_TUNABLES` unless the user set their own.

    Does nothing on non-Linux systems, when ``GLIBC_TUNABLES`` is already set, or when
    ``BBMN_PLAIN_MALLOC=1``.
    """
    if (not sys.platform.startswith("linux") or "GLIBC_TUNABLES" in os.environ
            or os.environ.get("BBMN_PLAIN_MALLOC") == "1" or os.environ.get(_FLAG)):
        return
    env = {**os.environ, "GLIBC_TUNABLES": MALLOC_TUNABLES, _FLAG: "1"}
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, *sys.argv], env)


def peak_rss_mb(children: bool = False) -> float:
    """Peak resident memory of this process (or of its largest finished child), in MB.

    For this process on Linux it is the kernel's high-water mark of the current program
    (``VmHWM``): ``ru_maxrss`` also counts the memory of whatever process forked this one before
    it ran ``exec``, which made a spawned benchmark rank report its parent's 1.9 GB.
    """
    if not children and sys.platform.startswith("linux"):
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    who = resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF
    return resource.getrusage(who).ru_maxrss / 1024.0
