"""Compiling the training step and running the training loop: progress, metrics, evaluation,
samples, checkpoints and stops."""
import json
import math
import signal
import sys
import time
from dataclasses import asdict, dataclass, fields
from functools import partial
from pathlib import Path

import numpy as np
import pytensor
import pytensor.tensor as pt
from tqdm import tqdm

from charrnn import __version__, bptt, cells, checkpoint, configs, devices, dropout, model, optim, precision, schedule
from charrnn.configs import TrainConfig, sampler_context, unroll_steps
from charrnn.corpus import BatchStream, Vocab, fingerprint, id_counts
from charrnn.evaluate import evaluate_stream, validation_step
from charrnn.sample import Sampler


class TrainingDiverged(RuntimeError):
    """The loss stopped being a finite number; the last checkpoint on disk is kept."""


class TrainingInterrupted(RuntimeError):
    """SIGINT or SIGTERM arrived; the step in progress was finished and a checkpoint written."""

    def __init__(self, signum, path):
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signum, self.path = signum, path


class NetworkOutgrown(Exception):
    """The budget, measured in the first updates, is long enough for the long budgets' network: the
    run starts again with it (Trainer.outgrown), and its files are written afresh."""


def compile_train_step(params, opt_state, model_cfg, train_cfg):
    """fn(x, y, w, states, [step,] lr) -> (mean nats per character, final states); applies one update.
    With dropout the masks are made inside from (rng_seed, step): step is the update's number (uint32)."""
    T, B, H, dtype = train_cfg.seq_len, train_cfg.batch_size, model_cfg.hidden, params["W_y"].dtype
    x = pt.tensor("x", dtype="int32", shape=(T, B))  # input ids
    y = pt.tensor("y", dtype="int32", shape=(T, B))  # target ids
    w = pt.tensor("w", dtype=dtype, shape=(T, B))  # 1 for real characters, 0 for padding
    states0 = pt.tensor("states", dtype=dtype, shape=(model_cfg.state_size, B, H))
    step = pt.scalar("step", dtype="uint32") if model_cfg.dropout else None
    keep = None if step is None else dropout.keep_multipliers((model_cfg.layers, T, B, H), model_cfg.dropout,
                                                              train_cfg.rng_seed, step, dtype)
    lr = pt.scalar("lr", dtype=dtype)  # an input, so a schedule never recompiles
    unroll, products = unroll_steps(train_cfg), precision.resolve(train_cfg.precision, train_cfg.backend)
    by_stream = train_cfg.devices > 1  # the streams are split over devices: model.positions
    rows = partial(model.positions, by_stream=by_stream)
    top, finals, tapes = model.run_layers(x, states0, params, model_cfg, keep=keep, tape=True, precision=products,
                                          unroll=unroll)
    total = (model.token_nll(model.output_logits(rows(top), params, products), rows(y)) * rows(w)).sum()
    mean = total / w.sum()
    # Autodiff from the loss down to the top layer's outputs, then the recurrent layers by hand.
    dW_y, db_y, dtop = pytensor.grad(total if train_cfg.loss == "sum" else mean, [params["W_y"], params["b_y"], top])
    grads = {"W_y": dW_y, "b_y": db_y,
             **bptt.backward(x, dtop, tapes, params, model_cfg, keep, products, unroll, by_stream)}
    grads = [grads[name] for name in params]
    grads = dict(zip(params, optim.clip_by_global_norm(grads, train_cfg.clip), strict=True))
    updates = optim.updates(train_cfg.optimizer, params, grads, opt_state, lr)
    inputs = [x, y, w, states0, *([step] if step is not None else []), lr]
    batch_axes = {x: 1, y: 1, w: 1, states0: 1, finals: 1}  # what devices > 1 split; step and lr are replicated
    return devices.compile_step(inputs, [mean, finals], updates, train_cfg, batch_axes)


# The TrainState fields a checkpoint's metadata holds at its top level; the others go under "resume".
SUMMARY = ("step", "loss", "val_loss", "best_val_loss")


@dataclass
class TrainState:
    """Where a run stands: what a checkpoint carries so that --resume continues exactly."""

    step: int = 0  # updates done
    epoch: int = 0  # full passes done
    position: int = 0  # batches done in the current pass
    loss: float | None = None  # mean nats per character over the last logging window
    val_loss: float | None = None  # at the last validation pass
    best_val_loss: float = math.inf
    evals_since_best: int = 0  # for --patience
    lr_scale: float = 1.0  # halved by each divergence the guard recovered from
    best_window_loss: float = math.inf  # the divergence guard's reference
    progress: float = 0.0  # of the run's budget, at the last update (schedule.Budget.progress)
    peak_lr: float | None = None  # --lr auto: the rate chosen for the budget (schedule.Budget.choose_lr)

    def to_meta(self):
        """The checkpoint metadata's summary keys, and its "resume" entry (README, "Checkpoint format")."""
        values = {name: _finite_or_none(v) for name, v in asdict(self).items()}
        return {**{name: values.pop(name) for name in SUMMARY}, "resume": values}

    def record_validation(self, loss):
        """Note a validation pass's loss; True when it is the best so far (patience counts the others)."""
        self.val_loss, self.evals_since_best = loss, self.evals_since_best + 1
        if loss < self.best_val_loss:
            self.best_val_loss, self.evals_since_best = loss, 0
        return self.evals_since_best == 0

    def lr(self, cfg):
        """--lr (or the rate auto chose) times the schedule's factor here (schedule.py), halved for each
        divergence the guard recovered from."""
        rate = schedule.peak(cfg, self.peak_lr)
        return self.lr_scale * rate * schedule.factor(cfg, self.step, self.epoch, self.progress)

    @classmethod
    def from_meta(cls, meta):
        """The state `to_meta` wrote; what an older checkpoint lacks (or holds as null) keeps its default."""
        values = {**meta["resume"], **{name: meta.get(name) for name in SUMMARY}}
        return cls(**{f.name: values[f.name] for f in fields(cls) if values.get(f.name) is not None})


def _finite_or_none(x):
    return x if not isinstance(x, float) or math.isfinite(x) else None


class DivergenceGuard:
    """char-rnn's safeguard: a loss that is not finite, or a logging window whose mean is over 3x
    the best window's, is a divergence. The run goes back to the last good state (remembered at
    each log line) with the learning rate halved; the third divergence in a row aborts."""

    def __init__(self, variables):
        self.variables = variables  # the shared parameters and optimizer state
        self.strikes = 0

    def remember(self, state, carried):
        """Keep the current weights, carried states and place in the stream as the last good state."""
        self.good = ({name: v.get_value() for name, v in self.variables.items()},
                     None if carried is None else carried.copy(), (state.step, state.epoch, state.position))

    def loss_verdict(self, state, losses):
        """Why the losses of the updates up to state.step are a divergence (one is not finite), or None."""
        first = state.step - len(losses) + 1
        return next((f"the loss became {loss} at update {first + k}" for k, loss in enumerate(losses)
                     if not math.isfinite(loss)), None)

    def window_verdict(self, state, window):
        """Why a logging window's losses are a divergence, or None (and then the window is the new reference)."""
        mean = float(np.mean(window))
        if mean > 3 * state.best_window_loss:
            return f"the loss {mean:.3f} is more than 3x the best {state.best_window_loss:.3f} at update {state.step}"
        state.best_window_loss, self.strikes = min(state.best_window_loss, mean), 0
        return None

    def recover(self, state, reason):
        """Restore the last good weights into the shared variables and `state`; returns the carried states."""
        self.strikes += 1
        if self.strikes >= 3:
            raise TrainingDiverged(f"{reason}, the third time in a row even after halving the learning rate; "
                                   f"nothing of it was saved")
        arrays, carried, (state.step, state.epoch, state.position) = self.good
        for name, v in self.variables.items():
            v.set_value(arrays[name])
        state.lr_scale /= 2
        return None if carried is None else carried.copy()


# Updates the loop may start before it waits for an earlier one to finish. JAX returns from an
# update before it is done, so the host makes the next batch and starts the next update while the
# device computes; a bound keeps what queued updates hold in memory small (the default network:
# about 12 MB each, 400 MB more for 32 queued on the 2-core development machine).
IN_FLIGHT = 2


class RunLog:
    """metrics.jsonl, samples.txt and the log lines. It keeps the losses of the current logging
    window (the latest unread, where the updates computed them) and the time evaluation,
    checkpoints and samples took from it (so chars/s counts training only). A new run starts both
    files afresh; a resumed one appends."""

    def __init__(self, out_dir, log, chars_per_step, steps_per_epoch, fresh):
        self.metrics_path, self.samples_path, self.log = out_dir / "metrics.jsonl", out_dir / "samples.txt", log
        self.chars_per_step, self.steps_per_epoch = chars_per_step, steps_per_epoch
        self.writes = devices.writes()  # of several processes, process 0 alone writes
        for path in (self.metrics_path, self.samples_path) if fresh and self.writes else ():
            path.write_text("", encoding="utf-8")
        self.start = self.window_start = time.perf_counter()
        self.window, self.unread, self.paused, self.updates = [], [], 0.0, 0

    def add(self, loss):
        """One update's loss, just started, and the update on the bar. The loss is fetched only once
        IN_FLIGHT later updates have started (which waits for its update to finish); the first
        update of the process is waited for at once and said, with how long it took."""
        if not self.updates:
            float(loss)  # waits for it
            self.log(f"first update done in {time.perf_counter() - self.start:.2f} s; training")
        self.unread.append(loss)
        if len(self.unread) > IN_FLIGHT:
            self.unread[-IN_FLIGHT - 1] = float(self.unread[-IN_FLIGHT - 1])
        self.updates += 1
        self.bar.update(self.chars_per_step)

    def read(self, state):
        """The losses added since the last read, as floats (waiting for the updates still running),
        for the guard; they join the window, whose mean the bar shows."""
        losses, self.unread = [float(loss) for loss in self.unread], []
        self.window.extend(losses)
        if losses:
            val = f", val {state.val_loss:.3f}" if state.val_loss is not None else ""
            self.bar.set_postfix_str(f"loss {np.mean(self.window[-100:]):.3f}{val} nats/char", refresh=False)
        return losses

    def elapsed(self):
        """Seconds since the run (this invocation) started."""
        return time.perf_counter() - self.start

    def progress(self, disable, total_steps, state, desc):
        """The run's progress bar (`disable` as tqdm's), counting characters from `state` on."""
        self.bar = progress_bar(disable, total=total_steps * self.chars_per_step,
                                initial=state.step * self.chars_per_step, smoothing=0.05, desc=desc)
        return self.bar

    def pending(self):
        """True while losses of updates are not in a logged window yet."""
        return bool(self.unread or self.window)

    def rewind(self, state):
        """The run went back to `state`: the window's losses are dropped and the bar goes back too."""
        self.window, self.unread, self.bar.n = [], [], state.step * self.chars_per_step

    def pause(self, since):
        """Take the time from `since` until now out of the window's training time."""
        self.paused += time.perf_counter() - since

    def close_window(self, state, lr):
        """Write the window's mean loss, lr and chars/s; start a new window."""
        now = time.perf_counter()
        rate = len(self.window) * self.chars_per_step / max(now - self.window_start - self.paused, 1e-9)
        state.loss = float(np.mean(self.window))
        self.write(state, {"loss": round(state.loss, 6), "lr": lr, "chars_per_s": round(rate, 1)})
        self.log(f"step {state.step}: loss {state.loss:.4f} nats/char, {rate:.0f} chars/s")
        self.window_start, self.paused, self.window = now, 0.0, []

    def write(self, state, record):
        """Append one metrics.jsonl line: where the run is, then `record`."""
        line = {"step": state.step, "epoch": round(epochs_done(state, self.steps_per_epoch), 4),
                "chars": state.step * self.chars_per_step, **record,
                "elapsed_s": round(time.perf_counter() - self.start, 3)}
        self._append(self.metrics_path, json.dumps(line) + "\n")

    def validation(self, state, best):
        """Write and say the validation loss `state` holds (`best`: it was saved as best.npz)."""
        self.write(state, {"val_loss": round(state.val_loss, 6), "val_bpc": round(state.val_loss / math.log(2), 6)})
        self.log(f"step {state.step}: validation loss {state.val_loss:.4f} nats/char, "
                 f"{state.val_loss / math.log(2):.4f} bits/char{' (best so far: best.npz)' if best else ''}")

    def sample(self, state, seed, text, path):
        """Append a sample to samples.txt, and say it with checkpoint `path`."""
        self.log(f"checkpoint {path} (step {state.step}); sample:\n{seed}{text}")
        self._append(self.samples_path, f"--- step {state.step}, loss {state.loss} ---\n{seed}{text}\n")

    def _append(self, path, text):
        """Append `text` to `path`; of several processes, process 0 alone writes."""
        if self.writes:
            with open(path, "a", encoding="utf-8") as f:
                f.write(text)


@dataclass(frozen=True)
class RunDescription:
    """What every checkpoint of a run says about it besides where it stands (README, "Checkpoint format")."""

    vocab: Vocab
    model_cfg: model.ModelConfig
    train_cfg: TrainConfig
    corpus: str  # the training part's fingerprint, which --resume checks
    char_counts: list  # per id, in the training part: eval's unigram baseline
    steps_per_epoch: int

    @classmethod
    def of(cls, vocab, model_cfg, train_cfg, train_ids, steps_per_epoch):
        counts = id_counts(train_ids, len(vocab)).tolist()
        return cls(vocab, model_cfg, train_cfg, fingerprint(train_ids), counts, steps_per_epoch)

    def metadata(self, state):
        """The checkpoint's JSON metadata at TrainState `state`."""
        summary = state.to_meta()
        summary["resume"]["corpus"] = self.corpus
        return {"charrnn_version": __version__, "vocab": self.vocab.to_json(), "model": asdict(self.model_cfg),
                "train": asdict(self.train_cfg), "epoch": epochs_done(state, self.steps_per_epoch),
                "char_counts": self.char_counts, **summary}


def network_words(model_cfg):
    """A network in a few words: GRU 2x256 with dropout 0.1."""
    return f"{cells.cell(model_cfg).label} {model_cfg.layers}x{model_cfg.hidden} with dropout {model_cfg.dropout:g}"


def epochs_done(state, steps_per_epoch):
    """Passes over the training part, fractional."""
    return state.epoch + state.position / steps_per_epoch


class Trainer:
    """One training run writing metrics.jsonl, samples.txt, latest.npz and best.npz into `out_dir`.

    show_progress: True shows the progress bars, False hides them, None shows them on a terminal only.
    long_network: the network to train instead when the budget, measured in its first updates,
    holds configs.LONG_BUDGET epochs or more (`run` raises NetworkOutgrown; `outgrown` starts it).
    """

    def __init__(self, vocab, model_cfg, train_cfg, out_dir, log=print, show_progress=None, long_network=None):
        self.vocab, self.model_cfg, self.cfg, self.out_dir, self.log = vocab, model_cfg, train_cfg, Path(out_dir), log
        self.show_progress, self.long_network = show_progress, long_network
        self.bar_off = None if show_progress is None else not show_progress  # tqdm's `disable`
        self.params = model.shared_params(model.init_params(model_cfg, train_cfg.rng_seed))
        self.opt_state = optim.optimizer_state(train_cfg.optimizer, self.params)
        self.sampler = Sampler(self.params, model_cfg, sampler_context(train_cfg), train_cfg.backend)
        self.guard = DivergenceGuard({**self.params, **self.opt_state})
        self.state, self.resumed = TrainState(), False
        self.states = self.eval_fn = self.val_loss_step = None  # states: (S, B, H), carried into the next batch
        self.dtype = self.params["W_y"].dtype
        self.zeros = zero_states(model_cfg, train_cfg.batch_size, self.dtype)

    def restore(self, params, extras, meta):
        """Continue exactly where a checkpoint written by this class stopped: parameters, optimizer
        state, carried state and the TrainState (the dropout masks follow from the step)."""
        arrays = {**params, **{name: extras[f"opt.{name}"] for name in self.opt_state}}
        for name, v in {**self.params, **self.opt_state}.items():
            v.set_value(np.asarray(arrays[name], dtype=v.dtype))  # older checkpoints hold a float64 t
        self.state, self.states, self.resumed = TrainState.from_meta(meta), extras.get("state"), True

    def compile(self):
        """Compile the training step, saying so and where it runs (the evaluation step compiles in `run`,
        once the validation stream's shape is known)."""
        self.device = devices.describe(self.cfg)
        self.where = f"{self.cfg.backend} on {self.device}"  # the bar's description
        self.log(f"compiling the training step with the {self.cfg.backend} backend on {self.device}"
                 f"{precision.describe(self.cfg.precision, self.cfg.backend)}...")
        start = time.perf_counter()
        self.step_fn = compile_train_step(self.params, self.opt_state, self.model_cfg, self.cfg)
        self.log(f"compiled in {time.perf_counter() - start:.1f} s")

    def outgrown(self):
        """After NetworkOutgrown: a new run of the long budgets' network, from its initial weights."""
        return Trainer(self.vocab, self.long_network, self.cfg, self.out_dir, self.log, self.show_progress)

    def run(self, train_ids, val_ids=None):
        """Train until a stop; returns the path of latest.npz."""
        self._prepare(train_ids, val_ids)
        with StopSignals(self.metrics.elapsed) as self.signals:  # the loop finishes its update, then stops
            with self.metrics.progress(self.bar_off, self.budget.total_steps, self.state, self.where):
                self._loop()
                self._after_update(stopped=True)  # a budget spent in a validation pass stops between log lines
                self.evaluate()
            if self.state.step % self.cfg.checkpoint_every or self.signals.signum:
                self.checkpoint()
        if self.signals.signum:
            raise TrainingInterrupted(self.signals.signum, self.out_dir / "latest.npz")
        return self.out_dir / "latest.npz"

    def _prepare(self, train_ids, val_ids):
        """The batch streams, the evaluation step, what checkpoints describe, and fresh logs for a new run."""
        self.stream = BatchStream(train_ids, self.cfg.batch_size, self.cfg.seq_len)
        self.budget = schedule.Budget(self.cfg, len(self.stream), self.state.progress, self.state.step)
        self.val_stream, self.eval_fn = validation_step(self.params, self.model_cfg, self.cfg, val_ids)
        self.description = RunDescription.of(self.vocab, self.model_cfg, self.cfg, train_ids, len(self.stream))
        self.seed_ids = train_ids[: self.cfg.seq_len]
        self.metrics = RunLog(self.out_dir, self.log, self.stream.T * self.stream.B, len(self.stream), not self.resumed)

    def _should_stop(self):
        s, patience = self.state, self.cfg.patience is not None and self.state.evals_since_best >= self.cfg.patience
        return self.budget.spent(s.step, self.signals.elapsed(s.step)) or patience or bool(self.signals.signum)

    def _loop(self):
        """Updates until a stop; after each, the guard, logging, evaluation and checkpoints have their turn."""
        s = self.state
        self.guard.remember(s, self.states)
        with np.errstate(all="ignore"):  # overflow shows up as a non-finite loss: the guard's job
            while s.epoch < self.cfg.epochs and not self._should_stop():
                if s.position == len(self.stream):  # --- an epoch is done
                    if not self._diverged(self.guard.loss_verdict(s, self.metrics.read(s))):
                        s.epoch, s.position = s.epoch + 1, 0
                        self.evaluate()
                    continue
                seconds = self.signals.elapsed(s.step)
                if self.budget.measure(s, seconds):
                    self._measured()
                s.progress = self.budget.progress(s.step, seconds)  # of the schedule
                self.metrics.add(self._update())  # --- one update
                s.step, s.position = s.step + 1, s.position + 1
                self._after_update()

    def _measured(self):
        """The budget's length in epochs is known (the same in every process): the network for it
        (NetworkOutgrown for a long one) and --lr auto's rate."""
        budget, s = self.budget, self.state
        budget.epochs = devices.from_process_0(budget.epochs)
        if self.long_network is not None and budget.epochs >= configs.LONG_BUDGET:
            raise NetworkOutgrown(f"the budget holds {budget.epochs:.3g} epochs of {network_words(self.model_cfg)}: "
                                  f"training {network_words(self.long_network)} instead, the default for "
                                  f"{configs.LONG_BUDGET:g} epochs or more")
        if budget.choose_lr(s):
            self.log(budget.chosen(s))

    def _after_update(self, stopped=False):
        """Logging, evaluation and checkpoints, where due (`stopped`: the loop ended, and only a window
        not logged yet is). The losses stay where the updates computed them until one of these is
        due: then the guard reads every loss since the last read first."""
        s, cfg = self.state, self.cfg
        log = self.metrics.pending() if stopped else s.step % cfg.log_every == 0 or self._should_stop()
        evaluate = not stopped and s.step % cfg.eval_every == 0 and self.val_stream is not None
        save = not stopped and s.step % cfg.checkpoint_every == 0
        if (log or evaluate or save) and self._diverged(self.guard.loss_verdict(s, self.metrics.read(s))):
            return
        if log:  # --- logging (a last, partial window is too short for the 3x rule)
            if not stopped and self._diverged(self.guard.window_verdict(s, self.metrics.window)):
                return
            self.metrics.close_window(s, s.lr(cfg))
            devices.to_host(self.step_fn)  # the weights, from the devices the step keeps them on
            self.guard.remember(s, self.states)
        if evaluate:  # --- evaluation
            self.evaluate()
        if save:  # --- checkpoint and sample
            self.checkpoint()

    def _update(self):
        """Start one update on the current batch; returns its loss, unread (JAX returns before the
        update is done, so the host goes on to the next batch while it runs)."""
        s = self.state
        if s.position == 0 or self.states is None or not self.cfg.carry_state:
            self.states = self.zeros  # at each epoch (or chunk)
        x, y, w = self.stream.batch(s.position)
        key = [np.asarray(s.step, dtype=np.uint32)] if self.model_cfg.dropout else []  # the dropout masks'
        loss, self.states = self.step_fn(x, y, w.astype(self.dtype, copy=False), self.states, *key,
                                         np.asarray(s.lr(self.cfg), dtype=self.dtype))
        return loss

    def _diverged(self, reason):
        """With a verdict from the guard: back to the last good state, said in one line; True then."""
        if reason is None:
            return False
        self.states = self.guard.recover(self.state, reason)
        self.metrics.rewind(self.state)
        self.log(f"{reason}: back to update {self.state.step} with the learning rate halved to "
                 f"{self.state.lr(self.cfg):.3g}")
        return True

    def evaluate(self):
        """Mean nats per character over the validation part, unless there is none or this update had
        its pass already; keeps best.npz at the lowest."""
        start, s = time.perf_counter(), self.state
        if self.val_stream is None or self.val_loss_step == s.step:
            return
        devices.to_host(self.step_fn)
        with progress_bar(self.bar_off, desc="validation", leave=False) as bar:  # 5 MB take over a minute
            total, _, count = evaluate_stream(self.eval_fn, self.val_stream, self.model_cfg, self.cfg.carry_state,
                                              self.dtype, bar)
        best, self.val_loss_step = s.record_validation(devices.from_process_0(total / count)), s.step
        if best:
            self._save("best.npz")
        self.metrics.validation(s, best)
        self.metrics.pause(start)

    def checkpoint(self):
        """Write latest.npz, then append a sample from the current weights to samples.txt (none with
        --sample-length 0: nothing is compiled for it)."""
        start = time.perf_counter()
        path = self._save("latest.npz")
        if self.cfg.sample_length:
            seed = self.vocab.decode(self.seed_ids)
            text = self.vocab.decode(self.sampler.generate(self.seed_ids, self.cfg.sample_length, 1.0,
                                                           self.state.step))
            self.metrics.sample(self.state, seed, text, path)
        else:
            self.log(f"checkpoint {path} (step {self.state.step})")
        self.metrics.pause(start)

    def _save(self, name):
        """Write checkpoint `name` in the run directory: weights, optimizer state, carried state, metadata."""
        carried, meta = devices.to_host(self.step_fn, self.states), self.description.metadata(self.state)
        write_checkpoint(self.out_dir / name, self.params, self.opt_state, carried, meta)  # every process calls it
        return self.out_dir / name


def write_checkpoint(path, params, opt_state, carried, meta):
    """checkpoint.save_run with the shared variables' values: of several processes training, process 0 alone
    writes (all of them gathered the carried (S, B, H) state, a collective, with devices.to_host)."""
    if devices.writes():
        checkpoint.save_run(path, {n: p.get_value() for n, p in params.items()},
                            {n: v.get_value() for n, v in opt_state.items()}, carried, meta)


def progress_bar(disable, **options):
    """A tqdm bar counting characters on stderr; `disable` as tqdm's (None: only on a terminal)."""
    return tqdm(**options, unit="char", unit_scale=True, disable=disable, file=sys.stderr, dynamic_ncols=True)


class StopSignals:
    """While the block runs, SIGINT and SIGTERM do not stop the process: the last one to arrive is kept in `signum`.
    With several processes, what stops the run is agreed by all of them: the signals and the training time."""

    signum = noted = None
    agreed_step = None  # the update the processes last agreed at

    def __init__(self, clock):
        self.clock = clock  # this invocation's training time so far, in seconds

    def __enter__(self):
        self.previous = {sig: signal.signal(sig, self._note) for sig in (signal.SIGINT, signal.SIGTERM)}
        return self

    def _note(self, signum, frame):
        self.noted = signum
        if devices.Processes.count == 1:
            self.signum = signum

    def elapsed(self, step):
        """The training time at update `step`, as every process sees it. Several processes agree once
        per update on the longest of their times (a budget spent in one is spent in all, and a
        time-based schedule has one learning rate) and on the signals, a signal to one being a
        signal to all (devices.agree: a collective)."""
        if devices.Processes.count == 1:
            return self.clock()
        if step != self.agreed_step:
            self.seconds, signum = devices.agree(self.clock(), self.noted or 0)
            self.agreed_step, self.signum = step, int(signum) or None
        return self.seconds

    def __exit__(self, *exc):
        for sig, old in self.previous.items():
            signal.signal(sig, old)


def zero_states(model_cfg, batch_size, dtype):
    """(S, B, H) zeros: the state every stream starts from."""
    return np.zeros((model_cfg.state_size, batch_size, model_cfg.hidden), dtype=dtype)
