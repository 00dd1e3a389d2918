"""The determinism switch (``run.deterministic`` in the workflow, ``--deterministic`` on the CLI).

Training is always seeded (Python, numpy, torch); on a CPU, with the same thread count, that alone
gives the same numbers run after run. The switch adds what a GPU needs: torch's deterministic
algorithms (``index_add_``, the sums of BatmanNet's message passing and pooling, then avoids
atomics; an operation that has no deterministic version raises instead of silently varying),
cuBLAS's fixed workspace (``CUBLAS_WORKSPACE_CONFIG``) and cuDNN without benchmarking.
"""

from __future__ import annotations

import contextlib
import os
import random
from collections.abc import Iterator

import numpy as np
import torch

#: cuBLAS needs a fixed workspace for reproducible matrix products (CUDA 10.2 and later)
CUBLAS_WORKSPACE = ":4096:8"


def seed_everything(seed: int) -> None:
    """Seed Python's, numpy's and torch's (CPU and every GPU) generators."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@contextlib.contextmanager
def deterministic(enabled: bool) -> Iterator[None]:
    """Within the block, torch uses deterministic algorithms only (when ``enabled``).

    The previous settings come back at the end, so in-process callers (tests, notebooks) are not
    left in deterministic mode.
    """
    if not enabled:
        yield
        return
    previous = (torch.are_deterministic_algorithms_enabled(),
                torch.is_deterministic_algorithms_warn_only_enabled(),
                torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)  # read when CUDA starts
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous[0], warn_only=previous[1])
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = previous[2:]
