"""Training's peak memory, estimated before the first step, and the batch size that fits the machine.

peak = what the process holds now (interpreter, libraries, the loaded data, the model's weights)
     + what training adds: gradients, AdamW's two moments and an EMA copy (4 bytes per parameter each)
     + LATER: libraries the run imports after the check (its validation metrics)
     + per item of a batch: the tensors autograd keeps for backward, counted exactly (saved-tensor hooks on a
       two-item forward, and twice the output for the loss), times BACKWARD for the gradients that live while
       backward runs.
The measuring forward draws from copies of every random stream and restores the model's buffers, so a run is the
same with or without it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from medattn.engine.memory import Budget, budget, human, refuse, rss

BACKWARD = 2.0  # peak of forward + backward over the tensors saved for backward (benchmarks/memory.py measures it)
LATER = 160 * 1024**2  # libraries a run imports after the check (validation metrics: scikit-learn, SciPy), measured
MEASURE_ITEMS = 2  # items in the measuring forward (batch norm needs more than one value per channel)


@dataclass
class TrainingEstimate:
    held: int  # bytes resident now, before the first step
    data: int  # of which: the task's in-memory training data (tensors and arrays in TaskData.extra)
    state: int  # gradients, optimizer moments and EMA copy still to be allocated
    per_item: int  # bytes kept for backward per item of a batch

    def need(self, batch: int) -> int:
        """Bytes training with `batch` adds to what is held now."""
        return LATER + self.state + math.ceil(self.per_item * batch * BACKWARD)

    def peak(self, batch: int) -> int:
        return self.held + self.need(batch)

    def to_dict(self, batch: int) -> dict:
        return {
            "peak": self.peak(batch),
            "held": self.held,
            "data": self.data,
            "state": self.state,
            "per_item": self.per_item,
            "batch": batch,
        }


def tensor_bytes(obj, *, depth: int = 5) -> int:
    """Bytes of every torch tensor and numpy array reachable from `obj` (dicts, sequences, object attributes),
    each storage counted once."""
    import numpy as np
    import torch

    seen: dict[int, int] = {}

    def walk(item, level: int) -> None:
        if isinstance(item, torch.Tensor):
            storage = item.untyped_storage()
            seen[storage.data_ptr()] = storage.nbytes()
        elif isinstance(item, np.ndarray):
            base = item if item.base is None or not isinstance(item.base, np.ndarray) else item.base
            seen[id(base)] = base.nbytes
        elif level <= 0 or isinstance(item, str | bytes | int | float | bool | type(None)):
            return
        elif isinstance(item, dict):
            for value in item.values():
                walk(value, level - 1)
        elif isinstance(item, list | tuple | set):
            for value in item:
                walk(value, level - 1)
        elif hasattr(item, "__dict__") and not isinstance(item, torch.nn.Module):
            for value in vars(item).values():
                walk(value, level - 1)

    walk(obj, depth)
    return sum(seen.values())


def saved_per_item(model, train_set, *, device, amp: bool) -> int:
    """Bytes autograd keeps for backward per training item, from one forward of a few items."""
    import torch

    from medattn.engine.device import autocast, model_inputs

    items = train_set.order(torch.Generator().manual_seed(0))[: min(MEASURE_ITEMS, len(train_set))]
    streams = {id(g): g for g in [*train_set.generators.values(), *train_set.rank_generators]}
    states = {key: g.get_state() for key, g in streams.items()}
    buffers = {name: b.detach().clone() for name, b in model.named_buffers()}
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved: dict[int, int] = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in params:
            saved[storage.data_ptr()] = storage.nbytes()
        return tensor

    was_training = model.training
    try:
        with torch.random.fork_rng(devices=[]), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            x, target = train_set.batch(items)
            model.train()
            with autocast(device, amp):
                inputs = model_inputs(x, device)
                output = model(*inputs)
            saved[-1] = sum(t.untyped_storage().nbytes() for t in inputs)  # the batch, whether or not an op keeps it
            # The loss is not called (a loss may count its calls); what it keeps is taken as two copies of the
            # output (a softmax and its log), each output of a deeply supervised model counted.
            # (a multi-head model's dict counted by its values)
            outputs = list(output.values()) if isinstance(output, dict) else output
            outputs = outputs if isinstance(outputs, list | tuple) else [outputs]
            saved[-2] = 2 * sum(o.untyped_storage().nbytes() for o in outputs if isinstance(o, torch.Tensor))
    finally:
        for key, g in streams.items():
            g.set_state(states[key])
        with torch.no_grad():
            for name, b in model.named_buffers():
                b.copy_(buffers[name])
        model.train(was_training)
    return math.ceil(sum(saved.values()) / len(items))


def estimate_training(model, train_set, data, *, device, amp: bool, ema: bool) -> TrainingEstimate:
    parameters = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    state = parameters * (3 + int(ema))  # gradients + AdamW's exp_avg and exp_avg_sq (+ the EMA copy)
    per_item = saved_per_item(model, train_set, device=device, amp=amp)
    return TrainingEstimate(held=rss(), data=tensor_bytes(data.extra), state=state, per_item=per_item)


def fit_batch(estimate: TrainingEstimate, batch: int, *, user_given: bool, have: Budget | None = None):
    """(batch that fits, note or None): an automatic batch is halved until it fits; a batch the user gave is
    never replaced but refused with the estimate; a batch of one that does not fit is refused."""
    have = have or budget()
    if estimate.need(batch) <= have.available:
        return batch, None
    fitting = batch
    while fitting > 1 and estimate.need(fitting) > have.available:
        fitting //= 2
    what = f"training with batch {batch} (estimated peak {human(estimate.peak(batch))})"
    if estimate.need(fitting) > have.available:
        raise refuse(
            what,
            need=estimate.need(batch),
            have=have,
            fix="a batch of 1 does not fit either: train a smaller model (--model) or a smaller input (--patch, "
            "--size) on this machine, or on one with more memory",
        )
    if user_given:
        raise refuse(what, need=estimate.need(batch), have=have, fix=f"pass --batch-size {fitting} or smaller")
    note = (
        f"memory: the automatic batch {batch} would need about {human(estimate.need(batch))} more, but "
        f"{human(have.available)} is available ({have.source}); training with batch {fitting} "
        f"(estimated peak {human(estimate.peak(fitting))})"
    )
    return fitting, note
