"""An order-keeping process map with a bounded number of items in flight."""

from __future__ import annotations

import collections
import multiprocessing as mp
from collections.abc import Callable, Iterable, Iterator


def ordered_map(fn: Callable, items: Iterable, workers: int = 0, ahead: int = 2,
                initializer: Callable | None = None, initargs: tuple = ()) -> Iterator:
    """``map(fn, items)`` in order; with ``workers > 0`` in that many processes, at most
    ``workers * ahead`` items in flight (``Pool.imap`` would read the whole input ahead)."""
    if workers <= 0:
        if initializer is not None:
            initializer(*initargs)
        yield from map(fn, items)
        return
    pool = mp.get_context("fork").Pool(workers, initializer, initargs)
    try:
        pending: collections.deque = collections.deque()
        for item in items:
            pending.append(pool.apply_async(fn, (item,)))
            if len(pending) >= workers * ahead:
                yield pending.popleft().get()
        while pending:
            yield pending.popleft().get()
    finally:
        pool.terminate()
        pool.join()  # reaped, so their peak memory counts in the children's usage
