"""A wall-clock budget for training (`train.time_limit`, minutes; `--time-limit`).

A laptop user asks for "the best model in ten minutes", and a benchmark of many models needs each run to fit its
share of a night. Cutting a run when the clock runs out would stop it in the middle of its schedule, with the
learning rate still high. Instead the first epoch is timed (validation included) and the run is re-planned to the
epochs that fit: the schedule is rebuilt for the new length and continues from where the first epoch left it, so
the learning rate still anneals to its end. Should later epochs run slower than the first (another process on the
same cores), the run also stops at the end of any epoch after which one more would overrun the budget.
A large model on a weak CPU may need longer than the whole budget for one epoch: the first steps are timed too
(PROBE_STEPS of them, fewer when they already took PROBE_SHARE of the budget), and when the epoch would overrun,
the run trains only the steps that fit (a random part of the
training set, as the epoch's order draws it), its schedule annealing over them.
The clock counts the training loop, validation included; reading the data and building the model do not count.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

PROBE_STEPS = 5  # steps timed before deciding whether one epoch fits; the first carries warm-up costs
TRAINING_SHARE = 0.85  # of the budget for the steps of a cut epoch: the rest for its validation
PROBE_SHARE = 0.1  # of the budget that timing the first steps may take before the decision is made


@dataclass
class TimeBudget:
    minutes: float
    spent_before: float = 0.0  # seconds trained before a resume (from history.csv)
    started: float = field(default_factory=time.perf_counter)

    @property
    def seconds(self) -> float:
        return 60.0 * self.minutes

    def elapsed(self) -> float:
        return self.spent_before + time.perf_counter() - self.started

    def epochs_that_fit(self, planned: int, first_epoch: float) -> int:
        """The epochs, of `planned`, that fit when one takes `first_epoch` seconds (at least one: it has run)."""
        return max(1, min(planned, int(self.seconds // max(first_epoch, 1e-9))))

    def steps_that_fit(self, steps: int, done: int, *, first: float | None = None) -> int:
        """Steps of a first epoch of `steps` that fit once `done` have run: all of them when the epoch fits in the
        training share of the budget at the pace so far, else those that do (never fewer than `done`). `first`, the
        clock at the end of the first step, leaves that step's warm-up out of the pace once later steps ran."""
        now = self.elapsed()
        pace = (now - first) / (done - 1) if first is not None and done > 1 else now / max(done, 1)
        room = TRAINING_SHARE * self.seconds - now
        if pace * (steps - done) <= room:
            return steps
        return max(done, done + int(room / max(pace, 1e-9)))

    def probing_too_long(self) -> bool:
        """Whether timing the first steps has already taken PROBE_SHARE of the budget: decide now."""
        return self.elapsed() >= PROBE_SHARE * self.seconds

    def one_more_overruns(self, epochs_here: int) -> bool:
        """Whether another epoch, at the mean pace of the `epochs_here` this process ran, would end past the budget."""
        here = time.perf_counter() - self.started
        return self.elapsed() + here / max(epochs_here, 1) > self.seconds


def replanned_schedule(optimizer, *, name: str, lr: float, steps_per_epoch: int, epochs: int, done: int):
    """The schedule for `epochs` epochs in all, advanced past the `done` steps already taken."""
    import warnings

    from medattn.engine.optim import build_schedule

    scheduler = build_schedule(optimizer, name=name, lr=lr, total_steps=steps_per_epoch * epochs)
    with warnings.catch_warnings():  # stepping a schedule without an optimizer step is the point here
        warnings.simplefilter("ignore", UserWarning)
        for _ in range(done):
            scheduler.step()
    return scheduler
