"""A wall-clock budget for training (`train.time_limit`, minutes; `--time-limit`).

A laptop user asks for "the best model in ten minutes", and a benchmark of many models needs each run to fit its
share of a night. Cutting a run when the clock runs out would stop it in the middle of its schedule, with the
learning rate still high. Instead the first epoch is timed (validation included) and the run is re-planned to the
epochs that fit: the schedule is rebuilt for the new length and continues from where the first epoch left it, so
the learning rate still anneals to its end. Should later epochs run slower than the first (another process on the
same cores), the run also stops at the end of any epoch after which one more would overrun the budget.
A large model on a weak CPU may need longer than the whole budget for one epoch: the first few steps are timed
too (PROBE_STEPS), and when the epoch would overrun, the run trains only the steps that fit (a random part of the
training set, as the epoch's order draws it), its schedule annealing over them.
The clock counts the training loop, validation included; reading the data and building the model do not count.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

PROBE_STEPS = 5  # steps timed before deciding whether one epoch fits; the first carries warm-up costs
TRAINING_SHARE = 0.85  # of the budget for the steps of a cut epoch: the rest for its validation


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

    def steps_that_fit(self, steps: int, done: int) -> int:
        """Steps of a first epoch of `steps` that fit once `done` have run at the pace so far: all of them when the
        epoch fits, else what fits in the training share of the budget (never fewer than those already run)."""
        pace = self.elapsed() / max(done, 1)
        if pace * steps <= TRAINING_SHARE * self.seconds:
            return steps
        return max(done, int(TRAINING_SHARE * self.seconds / max(pace, 1e-9)))

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
