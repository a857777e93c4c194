"""Learning-rate schedules: the factor of --lr at each update, and how much of the run's budget is spent.

char-rnn (its train.lua): lr_decay ** (epochs done beyond lr_decay_after - 1), a function of the
epoch alone. cosine: a linear warm-up over `warmup` updates, multiplied into a half cosine that
falls from 1 to `lr_floor` as the run's budget is spent (`Budget.progress`):

- with --max-steps: updates done over min(--max-steps, the updates of --epochs). A function of
  the step alone, so a resumed run has exactly the learning rates of an uninterrupted one.
- with --max-time and no --max-steps: the larger of the time fraction and the updates fraction
  of --epochs. It depends on the machine's speed: neither reproducible across machines nor
  exactly resumable. A resumed run starts from the progress its checkpoint holds and spends the
  rest over the new invocation's --max-time (which counts this invocation only).
- with neither: updates done over the updates of --epochs.
"""
import math

SCHEDULES = ("char-rnn", "cosine")


def factor(cfg, step, epoch, progress):
    """The multiplier of cfg.lr for update `step` + 1, with `epoch` passes done and `progress`
    (0 to 1) of the budget spent."""
    if cfg.lr_schedule == "char-rnn":
        return cfg.lr_decay ** max(0, epoch - cfg.lr_decay_after + 1)
    warm = min(1.0, (step + 1) / cfg.warmup) if cfg.warmup else 1.0
    return warm * (cfg.lr_floor + (1 - cfg.lr_floor) * (1 + math.cos(math.pi * min(progress, 1.0))) / 2)


class Budget:
    """A run's budget: the updates it may make, its training time, and how much of them is spent."""

    def __init__(self, cfg, steps_per_epoch, progress=0.0):
        self.cfg = cfg
        self.total_steps = min(steps_per_epoch * cfg.epochs, cfg.max_steps or math.inf)
        self.start = progress  # the progress a resumed run's checkpoint holds: where a time-based schedule was

    def spent(self, step, seconds):
        """True once `step` updates are the budget's, or `seconds` of training time reach --max-time."""
        return step >= self.total_steps or (self.cfg.max_time is not None and seconds >= self.cfg.max_time)

    def timed(self):
        """True when progress is measured in time (--max-time without --max-steps)."""
        return self.cfg.max_time is not None and self.cfg.max_steps is None

    def progress(self, step, seconds):
        """The fraction of the budget spent after `step` updates and `seconds` of this invocation's
        training time (evaluation and checkpoints included, as --max-time counts them)."""
        done = min(step / self.total_steps, 1.0)
        if not self.timed():
            return done
        return min(1.0, max(done, self.start + (1 - self.start) * seconds / self.cfg.max_time))
