"""Several processes (torchrun): the process group, who writes, and each rank's share of an epoch.

`torchrun --nproc_per_node N -m medattn train ...` starts N copies of the command with WORLD_SIZE, RANK and
LOCAL_RANK in their environment. Every copy loads the data and builds the same model; DistributedDataParallel
averages the gradients, so the weights stay identical on every rank. Rank 0 alone validates and writes the
run directory. Without those variables (or with WORLD_SIZE=1) every function here is a no-op and training is
exactly the single-process loop.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

from medattn.errors import ConfigError, MedattnError

T = TypeVar("T")
# Rank 0 validates and writes checkpoints while the others wait in a collective; NCCL's default 10 minutes
# could run out on a large validation set.
TIMEOUT = timedelta(minutes=30)


def _env_int(name: str, default: int) -> int:
    text = os.environ.get(name, "")
    if not text:
        return default
    try:
        return int(text)
    except ValueError as error:
        raise ConfigError(f"environment variable {name}={text!r}: expected an integer (set by torchrun)") from error


def world_size() -> int:
    """How many processes train together (1 without torchrun)."""
    return max(1, _env_int("WORLD_SIZE", 1))


def rank() -> int:
    """This process's index among all of them (0 without torchrun)."""
    return _env_int("RANK", 0) if world_size() > 1 else 0


_this_rank = rank  # for functions whose `rank` argument hides the function


def local_rank() -> int:
    """This process's index on its machine: its GPU."""
    return _env_int("LOCAL_RANK", 0) if world_size() > 1 else 0


def local_world_size() -> int:
    """Processes on this machine (they share its cores)."""
    return max(1, _env_int("LOCAL_WORLD_SIZE", world_size())) if world_size() > 1 else 1


def enabled() -> bool:
    """Launched by torchrun (or another launcher that sets WORLD_SIZE) with more than one process."""
    return world_size() > 1


def is_main() -> bool:
    """The process that validates, writes the run directory and prints: rank 0, or the only one."""
    return rank() == 0


def active() -> bool:
    """The process group is up."""
    if not enabled():
        return False
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized()


def start(device_name: str = "auto"):
    """The device this process trains on; joins the process group first when launched by torchrun.

    gloo on CPU, NCCL on CUDA with one GPU per process (cuda:LOCAL_RANK). Calling it again is harmless.
    """
    import torch

    from medattn.engine.device import select_device

    device = select_device(device_name)
    if not enabled():
        return device
    import torch.distributed as dist

    if device.type == "mps":
        if device_name != "auto":
            raise ConfigError("--device mps: several processes (torchrun) need --device cpu or cuda")
        device = torch.device("cpu")
    if device.type == "cuda":
        if device.index is not None:
            raise ConfigError(
                f"--device {device_name} under torchrun: each process takes cuda:LOCAL_RANK; pass --device cuda"
            )
        if local_rank() >= torch.cuda.device_count():
            raise ConfigError(
                f"LOCAL_RANK {local_rank()} but this machine has {torch.cuda.device_count()} GPU(s): "
                "--nproc_per_node must not exceed the GPU count"
            )
        device = torch.device("cuda", local_rank())
        torch.cuda.set_device(device)
    if not dist.is_available():
        raise ConfigError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
    if not dist.is_initialized():
        dist.init_process_group(
            backend="nccl" if device.type == "cuda" else "gloo",
            timeout=TIMEOUT,
            device_id=device if device.type == "cuda" else None,
        )
    return device


def stop() -> None:
    """Leave the process group (at the end of the command).

    The DistributedDataParallel wrapper of a finished `fit` sits in reference cycles (its hooks hold it); left to
    the collector it would be torn down during interpreter shutdown, after the group, and its reducer's threads
    then abort the process ("terminate called without an active exception", seen about one run in six). So it is
    collected here, while the group is alive, and the group is destroyed after every rank got here.
    """
    if active():
        import gc

        import torch.distributed as dist

        gc.collect()
        dist.barrier()
        dist.destroy_process_group()


def _collective_device():
    import torch
    import torch.distributed as dist

    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def all_reduce(values: list[float], *, op: str = "sum") -> list[float]:
    """The sum (or max) of each value over all ranks; the values themselves in one process."""
    if not active():
        return values
    import torch
    import torch.distributed as dist

    reduce_op = {"sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX}[op]
    tensor = torch.tensor(values, dtype=torch.float64, device=_collective_device())  # (len(values),)
    dist.all_reduce(tensor, op=reduce_op)
    return tensor.tolist()


def broadcast(value: T) -> T:
    """Rank 0's `value` on every rank (any picklable object); the others' arguments are ignored."""
    if not active():
        return value
    import torch.distributed as dist

    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def on_main(work: Callable[[], T]) -> T:
    """Run `work()` on rank 0 only while the others wait; every rank returns its result or raises its error.

    This is the barrier, with news: a user error on rank 0 (say, a run directory that exists) must stop every
    rank, not leave the others waiting at a plain barrier until the timeout.
    """
    if not active():
        return work()
    outcome: tuple[Any, BaseException | None] = (None, None)
    if is_main():
        try:
            outcome = (work(), None)
        except Exception as error:
            broadcast((None, _portable(error)))
            raise
    result, error = broadcast(outcome)
    if error is not None:
        raise _rebuilt(*error)
    return result


def _portable(error: Exception) -> tuple[str, str]:
    """`error` as plain text the other ranks can rebuild: its class name and message."""
    return type(error).__name__, str(error)


def _rebuilt(kind: str, message: str) -> Exception:
    """The same medattn error class with rank 0's message, or a RuntimeError naming what rank 0 raised."""
    from medattn import errors

    cls = getattr(errors, kind, None)
    if isinstance(cls, type) and issubclass(cls, MedattnError):
        return cls(message)
    return RuntimeError(f"rank 0 failed: {kind}: {message}")


def wrap(model, device):
    """The module to call in the training step: DistributedDataParallel around `model`, or `model` itself.

    On CUDA the batch norms become SyncBatchNorm first (in place), so their statistics come from the whole
    global batch as in one process; gloo has no SyncBatchNorm, so on CPU each rank normalises its own share.
    `model` keeps its parameter names: save and evaluate it, never the wrapper (whose names gain "module.").
    """
    if not active():
        return model
    import torch
    from torch.nn.parallel import DistributedDataParallel

    if device.type == "cuda":
        converted = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        if converted is not model:  # only a bare batch norm as the root would be replaced
            raise ConfigError("a model that is a single batch norm cannot train with several processes")
        return DistributedDataParallel(model, device_ids=[device.index])
    return DistributedDataParallel(model)


def rank_batches(order, *, batch: int, rank: int | None = None, world: int | None = None) -> list:
    """This rank's batches of one epoch, from `order` (the epoch's indices, the same on every rank).

    One process: `order[s : s + batch]` for s = 0, batch, 2 * batch, ..., without a last batch of a single image
    (batch norm cannot train on one). W processes: `order` is padded by wrapping round to a multiple of W and
    rank r takes every W-th index from r, in batches of batch // W. Every rank then has the same number of
    batches (DDP waits for all of them at each step) and, when W divides the batch, step k over all ranks
    together holds the images of step k in one process.
    """
    import torch

    rank = _this_rank() if rank is None else rank
    world = world_size() if world is None else world
    if world > 1:
        if batch // world < 2:
            raise ConfigError(
                f"train.batch_size {batch} with {world} processes leaves {batch // world} image(s) per process "
                f"and batch step; use a batch size of at least {2 * world}"
            )
        pad = -len(order) % world
        if pad:
            order = torch.cat([order, order[torch.arange(pad) % len(order)]])
        order = order[rank::world]  # (len(order) / world,)
        batch //= world
    n = len(order)
    return [order[s : s + batch] for s in range(0, n, batch) if min(batch, n - s) >= 2]


def batch_note(batch: int) -> str | None:
    """A line for the model card when the global batch does not split evenly over the processes."""
    world = world_size()
    if world == 1:
        return None
    effective = (batch // world) * world
    if effective == batch:
        return f"trained by {world} processes, {batch // world} images each per step"
    return f"trained by {world} processes, {batch // world} images each per step: a batch of {effective}, not {batch}"


def reseed_rank_streams(*, seed: int, epoch: int, generators: list) -> None:
    """Give each rank its own augmentation, mixing and dropout draws for this epoch.

    Identical streams would flip image j of every rank's share alike. The seeds are a function of
    (seed, epoch, rank), so a run resumed at an epoch boundary draws exactly what it would have drawn.
    The epoch order's generator is not among `generators`: every rank must draw the same order.
    (MONAI transforms keep their own numpy state, as in one process; they run on different images per rank.)
    """
    if not enabled():
        return
    import numpy as np
    import torch

    seeds = np.random.SeedSequence([seed, epoch, rank()]).generate_state(len(generators) + 1)
    for generator, value in zip(generators, seeds, strict=False):
        generator.manual_seed(int(value))
    torch.manual_seed(int(seeds[-1]))


def main_bar():
    """The training progress bar on rank 0; a silent one on the others (N bars would garble the terminal)."""
    from medattn.progress import bar

    if is_main():
        return bar()
    from rich.progress import Progress

    return Progress(disable=True)
