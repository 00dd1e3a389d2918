"""Averaging data-parallel CPU ranks' gradients through shared memory instead of gloo's sockets.

When every rank runs on one machine's CPU (``torchrun --nproc_per_node N`` without GPUs), DDP's
gloo backend still sends each gradient bucket through the loopback network: 2.44M gradients took
5.3 ms per all-reduce on the 2-core machine of docs/benchmarks.md, about 5% of a rank's step,
which a rank spends waiting after its backward pass. :func:`hook` is a DDP communication hook
(``DistributedDataParallel.register_comm_hook``, torch's API for replacing the all-reduce; its
state a :class:`SharedMemoryAverage`) that averages a bucket where the ranks can all read it:
each rank copies its bucket into its slot of a region in ``/dev/shm``, the ranks meet at a
barrier, and each writes the mean of the slots into its own bucket (2.2 ms for the same
gradients, the barrier included).

Hand-written because no library in this stack does it: gloo has no shared-memory transport, and
the CPU collectives that do (oneCCL's bindings, DeepSpeed's shm ops) are compiled packages tied
to other torch versions. Every rank computes the same mean of the same slots in the same order,
so the ranks' weights stay bit-identical, as with an all-reduce.

(No ``from __future__ import annotations`` here: DDP checks the hook's annotations as objects.)
"""

import logging
import os
import shutil
import uuid
from pathlib import Path

import torch
import torch.distributed as dist

log = logging.getLogger(__name__)

#: Where the region lives: tmpfs, so it is memory, not disk.
SHARED_MEMORY_DIR = Path("/dev/shm")


def available(world_size: int, device: torch.device, model: torch.nn.Module) -> bool:
    """Whether the hook applies: CPU ranks, all of them on this machine (torchrun's
    ``LOCAL_WORLD_SIZE`` equals the world size), and a tmpfs with room for the region (a container's
    ``/dev/shm`` can be 64 MB, and writing past a full tmpfs kills the process with SIGBUS)."""
    local = int(os.environ.get("LOCAL_WORLD_SIZE", world_size))
    if not (world_size > 1 and device.type == "cpu" and local == world_size and SHARED_MEMORY_DIR.is_dir()):
        return False
    return shutil.disk_usage(SHARED_MEMORY_DIR).free > 2 * region_bytes(world_size, model)


def gradient_bytes(model: torch.nn.Module) -> int:
    """Bytes of all of ``model``'s gradients."""
    return sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)


def slot_bytes(model: torch.nn.Module) -> int:
    """One rank's slot: all the gradients, rounded up to whole cache lines so that every slot
    starts on one (and any dtype can view it)."""
    return -(-gradient_bytes(model) // 64) * 64


def region_bytes(world_size: int, model: torch.nn.Module) -> int:
    """The shared region: two sets of one slot per rank."""
    return 2 * world_size * slot_bytes(model)


class SharedMemoryAverage:
    """A DDP communication hook's state: a shared region of two sets of slots, one per rank.

    The region holds ``2 x world_size`` slots as large as all the model's gradients together (no
    bucket is larger). Consecutive buckets alternate between the two sets, so one barrier per
    bucket is enough: a rank writing a set again has passed the barrier of the bucket between,
    which every rank reaches only after it finished reading that set.

    Make it with :meth:`open` on every rank, then ``ddp_model.register_comm_hook(state, hook)``.
    The region's file is unlinked as soon as every rank has mapped it, so nothing is left in
    ``/dev/shm`` if a rank dies.
    """

    def __init__(self, region: torch.Tensor, capacity: int, group: dist.ProcessGroup | None = None) -> None:
        self.region, self.capacity, self.group = region, capacity, group
        self.rank, self.world_size = dist.get_rank(group), dist.get_world_size(group)
        self.calls = 0

    @classmethod
    def open(cls, model: torch.nn.Module, group: dist.ProcessGroup | None = None) -> "SharedMemoryAverage | None":
        """The region for ``model``'s gradients, made by rank 0 and mapped by every rank (a
        collective); None on every rank when any rank could not (a read-only or full ``/dev/shm``,
        another mount namespace), and the caller averages with its backend instead."""
        rank, world_size = dist.get_rank(group), dist.get_world_size(group)
        size = region_bytes(world_size, model)
        path = None
        if rank == 0:
            path = str(SHARED_MEMORY_DIR / f"bbmn-gradients-{uuid.uuid4().hex}")
            try:
                with open(path, "wb") as handle:
                    # reserve the pages now: a tmpfs that runs out later kills the writer (SIGBUS)
                    os.posix_fallocate(handle.fileno(), 0, size)
            except OSError as error:
                log.warning("cannot make a %d-byte region in %s (%s)", size, SHARED_MEMORY_DIR, error)
                _remove(path)
                path = None
        shared = [path]
        dist.broadcast_object_list(shared, src=0, group=group)
        path, region = shared[0], None
        if path is not None:
            try:
                region = torch.from_file(path, shared=True, size=size, dtype=torch.uint8)
            except RuntimeError as error:  # torch reports a failed open or mmap as a RuntimeError
                log.warning("rank %d cannot map %s (%s)", rank, path, error)
        failed = torch.tensor([float(region is None)])
        dist.all_reduce(failed, op=dist.ReduceOp.MAX, group=group)
        if rank == 0 and path is not None:
            _remove(path)
        return None if failed.item() else cls(region, slot_bytes(model), group)

    def slots(self, numel: int, dtype: torch.dtype) -> torch.Tensor:
        """``(world_size, numel)`` slots of the next set, as ``dtype``."""
        nbytes = numel * dtype.itemsize
        if nbytes > self.capacity:
            raise ValueError(f"a gradient bucket of {nbytes} bytes exceeds the shared region's "
                             f"{self.capacity} per slot")
        first = (self.calls % 2) * self.world_size * self.capacity
        self.calls += 1
        per_set = self.region[first:first + self.world_size * self.capacity].view(self.world_size, self.capacity)
        return per_set[:, :nbytes].view(dtype)


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def hook(state: SharedMemoryAverage, bucket: dist.GradBucket) -> torch.futures.Future[torch.Tensor]:
    """Average ``bucket`` over the ranks in place; an already completed future of it."""
    gradients = bucket.buffer()
    slots = state.slots(gradients.numel(), gradients.dtype)
    slots[state.rank].copy_(gradients.view(-1))
    dist.barrier(state.group)
    torch.mean(slots, dim=0, out=gradients.view(-1))
    future: torch.futures.Future[torch.Tensor] = torch.futures.Future()
    future.set_result(gradients)
    return future
