"""The peak memory a command reports is its own, not that of the process it was started from."""

from __future__ import annotations

import multiprocessing
import sys

import pytest

from bbmn.train.runtime import peak_rss_mb


def _report_peak(queue) -> None:
    queue.put(peak_rss_mb())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the inherited high-water mark is Linux's")
def test_a_spawned_process_does_not_report_its_parents_memory():
    ballast = bytearray(600 * 2**20)  # touched by the zero fill: resident in this process
    parent = peak_rss_mb()
    context = multiprocessing.get_context("spawn")  # fork + exec, like torch.multiprocessing.spawn
    queue = context.SimpleQueue()
    child = context.Process(target=_report_peak, args=(queue,))
    child.start()
    child_peak = queue.get()
    child.join()
    del ballast
    assert parent > 600 and 0 < child_peak < parent - 400, (parent, child_peak)
