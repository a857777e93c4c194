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

The budget's length in epochs (`Budget.measure`) is known at the start for a budget in updates
(the same every time, so exactly resumable); for --max-time alone, it is estimated from how fast
MEASURE_OVER updates ran, MEASURE_FROM updates in. It chooses --lr auto's peak rate (`auto_lr`;
until then the rate is the long budgets'), and the default network for a long budget
(configs.LONG_BUDGET). The rate chosen is part of where the run stands: a resumed run keeps it.
"""
import math

SCHEDULES = ("char-rnn", "cosine")

# --lr auto with the cosine schedule: (epochs, peak rate) at a short and a long budget, log-linear
# between, measured with the default network at batch 64 on tinyshakespeare (README.md, "The learning
# rate for the budget"): 3e-3 won at 6-8.7 epochs (five minutes on the 2-core development machine),
# 2e-3 at 16-33 (ten and twenty). char-rnn's schedule: 2e-3 (char-rnn's own default) whatever the budget.
AUTO_LR = ((10.0, 3e-3), (16.0, 2e-3))
MEASURE_FROM, MEASURE_OVER = 5, 20  # --max-time alone: the updates skipped, then timed, to estimate the epochs


def auto_lr(cfg, epochs):
    """--lr auto's peak learning rate for a budget of `epochs` passes (AUTO_LR), to 3 significant figures."""
    (short, high), (long, low) = AUTO_LR
    if cfg.lr_schedule != "cosine" or epochs >= long:
        return low
    if epochs <= short:
        return high
    t = math.log(epochs / short) / math.log(long / short)
    return float(f"{high * (low / high) ** t:.3g}")


def peak(cfg, chosen=None):
    """The learning rate the schedule multiplies: --lr, or for auto the rate chosen for the budget (until it
    is chosen, the long budgets' rate)."""
    return cfg.lr if cfg.lr != "auto" else chosen or AUTO_LR[-1][1]


def factor(cfg, step, epoch, progress):
    """The multiplier of cfg.lr for update `step` + 1, with `epoch` passes done and `progress`
    (0 to 1) of the budget spent."""
    if cfg.lr_schedule == "char-rnn":
        return cfg.lr_decay ** max(0, epoch - cfg.lr_decay_after + 1)
    warm = min(1.0, (step + 1) / cfg.warmup) if cfg.warmup else 1.0
    return warm * (cfg.lr_floor + (1 - cfg.lr_floor) * (1 + math.cos(math.pi * min(progress, 1.0))) / 2)


def planned_epochs(cfg, steps_per_epoch):
    """The budget's length in epochs where it is in updates (--max-steps or --epochs, with no --max-time
    or with --max-steps too); None for --max-time alone, which the run's speed decides (Budget.measure)."""
    if cfg.max_time is not None and cfg.max_steps is None:
        return None
    return min(steps_per_epoch * cfg.epochs, cfg.max_steps or math.inf) / steps_per_epoch


class Budget:
    """A run's budget: the updates it may make, its training time, and how much of them is spent."""

    def __init__(self, cfg, steps_per_epoch, progress=0.0, step=0):
        self.cfg, self.steps_per_epoch = cfg, steps_per_epoch
        self.total_steps = min(steps_per_epoch * cfg.epochs, cfg.max_steps or math.inf)
        self.start = progress  # the progress a resumed run's checkpoint holds: where a time-based schedule was
        self.first = step  # the update this invocation starts from
        self.mark = None  # (step, seconds) where the timing of --max-time's updates began
        self.epochs = None  # the budget's length in epochs, once measured

    def measure(self, state, seconds):
        """Set self.epochs, the budget's length in epochs: at once for a budget in updates, else once
        MEASURE_OVER updates were timed (`seconds`: this invocation's training time at update
        state.step). True when it was set by this call."""
        if self.epochs is not None:
            return False
        if not self.timed():
            self.epochs = planned_epochs(self.cfg, self.steps_per_epoch)
            return True
        if self.mark is None or state.step < self.mark[0]:  # (the divergence guard may go back)
            if state.step >= self.first + MEASURE_FROM:
                self.mark = (state.step, seconds)
            return False
        if state.step - self.mark[0] < MEASURE_OVER:
            return False
        rate = (state.step - self.mark[0]) / max(seconds - self.mark[1], 1e-9)  # updates per second
        planned = min(self.total_steps, state.step + rate * max(self.cfg.max_time - seconds, 0.0))
        self.epochs = planned / self.steps_per_epoch
        return True

    def choose_lr(self, state):
        """--lr auto: set state.peak_lr for the budget's length in epochs (once `measure` has set it;
        a resumed run keeps the rate its checkpoint holds). True when it was set by this call."""
        if self.cfg.lr != "auto" or state.peak_lr is not None or self.epochs is None:
            return False
        state.peak_lr = auto_lr(self.cfg, self.epochs)
        return True

    def chosen(self, state):
        """The line saying what --lr auto chose (after choose_lr said True)."""
        return f"learning rate {state.peak_lr:.3g} (--lr auto, for a budget of {self.epochs:.3g} epochs)"

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
