"""Where a command runs (``--device auto|cpu|cuda|cuda:N``), the same rule for every command.

The string is checked before any work starts, so a typo or a GPU that is not there stops the
command with one line (:class:`~bbmn.errors.BbmnError`) instead of a CUDA traceback after the data
has been loaded. On a GPU, batches are copied from pinned memory without waiting, so the CPU builds
the next batch while the GPU computes; on the CPU nothing is moved or copied, so CPU runs give the
same numbers as before devices were a choice.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from typing import TypeVar

import torch

from bbmn.errors import BbmnError

log = logging.getLogger(__name__)

T = TypeVar("T")

#: what ``--device`` accepts
DEVICES = ("auto", "cpu", "cuda", "cuda:N")

#: Capacity of oneDNN's primitive cache (bf16 products on a CPU) unless the user sets
#: ``ONEDNN_PRIMITIVE_CACHE_CAPACITY``. oneDNN keeps up to 1,024 primitives by default, one per
#: product shape, and every batch brings new shapes: bf16 pre-training's peak RSS grew to 2.0 GiB
#: in 200 steps (0.9 GiB in float32). With 32 it stayed at 1.2 GiB and ran as fast (0 was 17%
#: slower); docs/benchmarks.md.
ONEDNN_CACHE_CAPACITY = 32


def resolve_device(requested: str = "auto", local_rank: int = 0) -> torch.device:
    """The device ``requested`` names: ``auto`` is this rank's GPU when CUDA works, else the CPU;
    ``cuda`` without an index is this rank's GPU (``local_rank`` modulo the GPU count).

    Raises:
        BbmnError: for a string that is none of :data:`DEVICES`, ``cuda`` on a machine without a
            usable GPU, or a GPU index the machine does not have.
    """
    text = str(requested).strip().lower()
    if text == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank % torch.cuda.device_count())
        return torch.device("cpu")
    if text == "cpu":
        return torch.device("cpu")
    match = re.fullmatch(r"cuda(?::(\d+))?", text)
    if match is None:
        raise BbmnError(f"--device {requested!r} is not a device; use one of {', '.join(DEVICES)}")
    if not torch.cuda.is_available():
        raise BbmnError(f"--device {requested} asked, but this machine has no CUDA GPU "
                        f"(torch.cuda.is_available() is False); use --device cpu or auto")
    count = torch.cuda.device_count()
    index = int(match.group(1)) if match.group(1) is not None else local_rank % count
    if index >= count:
        raise BbmnError(f"--device {requested} asked, but this machine has {count} CUDA GPU(s): "
                        f"cuda:0 to cuda:{count - 1}")
    return torch.device("cuda", index)


def cpu_has_native_bf16() -> bool:
    """Whether this CPU multiplies bf16 natively (``avx512_bf16`` or AMX), as torch reports it."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def use_bf16(requested: bool, device: torch.device) -> bool:
    """Whether to autocast to bfloat16: when asked, on a GPU or on a CPU with native bf16 (there
    it also caps oneDNN's primitive cache, :func:`bound_onednn_cache`). On other CPUs bf16
    autocast was measured slower than float32 (docs/benchmarks.md), so the request is dropped
    there with one warning."""
    if not requested or device.type == "cuda":
        return requested
    if device.type == "cpu" and cpu_has_native_bf16():
        bound_onednn_cache()
        return True
    log.warning("--bf16 needs a GPU or a CPU with native bf16 (avx512_bf16 or AMX); on %s this run "
                "computes in float32", device)
    return False


def bound_onednn_cache() -> None:
    """Cap oneDNN's primitive cache at :data:`ONEDNN_CACHE_CAPACITY` unless the environment sets
    it. oneDNN reads the variable when it makes its first primitive, which in bbmn's commands is
    the first bf16 product, after this call."""
    os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", str(ONEDNN_CACHE_CAPACITY))


def autocast(enabled: bool, device: torch.device) -> contextlib.AbstractContextManager:
    """bfloat16 autocast on ``device`` when ``enabled`` (see :func:`use_bf16`), else nothing."""
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


def to_device(x: T, device: torch.device) -> T:
    """``x`` (a CPU tensor or torch_geometric ``Batch``) on ``device``: to a GPU through pinned
    memory with a non-blocking copy (the GPU's stream orders it before the kernels that read it);
    to the CPU, ``x`` itself (no copy)."""
    if device.type == "cuda":
        return x.pin_memory().to(device, non_blocking=True)
    return x.to(device)


def device_of(module: torch.nn.Module) -> torch.device:
    """Where ``module``'s weights are (the CPU for a module without any): inputs go there."""
    return next(module.parameters(), torch.empty(0)).device
