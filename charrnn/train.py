"""Compiling the train and eval steps and running the training loop: progress, metrics,
evaluation, samples, checkpoints and stops."""
import hashlib
import json
import math
import signal
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pytensor
import pytensor.tensor as pt
from tqdm import tqdm

from charrnn import __version__, bptt, checkpoint, model, optim
from charrnn.backend import DEFAULT_BACKEND, compile_function, device
from charrnn.corpus import CHUNK, BatchStream, eval_stream, id_counts
from charrnn.sample import Sampler


@dataclass(frozen=True)
class TrainConfig:
    seq_len: int = 64  # characters per chunk: the truncated-BPTT length (lesson 6: 8)
    batch_size: int = 64  # contiguous streams read side by side (lesson 6: 1)
    carry_state: bool = True  # carry the hidden state from chunk to chunk within an epoch (lesson 6: reset)
    optimizer: str = "adam"  # sgd, momentum, rmsprop or adam (lesson 6: sgd)
    lr: float = 2e-3  # learning rate (lesson 6: 0.01)
    loss: str = "mean"  # the update's loss: mean per character, or summed over the chunk (lesson 6)
    clip: float = 5.0  # clip gradients to this global L2 norm; 0 disables (lesson 6: 0)
    lr_decay: float = 0.97  # multiply lr by this after each epoch ...
    lr_decay_after: int = 10  # ... once this many epochs are done (char-rnn's schedule)
    val_frac: float = 0.05  # tail of the corpus held out for validation (lesson 6: 0)
    eval_every: int = 500  # updates between validation passes (and at each epoch's end)
    epochs: int = 50  # passes over the training part
    max_steps: int | None = None  # stop after this many updates
    max_time: float | None = None  # stop after this many seconds of training
    patience: int | None = None  # stop when validation has not improved for this many evaluations
    log_every: int = 100  # updates between metrics.jsonl entries
    checkpoint_every: int = 1000  # updates between checkpoints and samples
    sample_length: int = 200  # characters in each training-time sample
    rng_seed: int = 0  # weight initialisation, dropout masks and sample draws
    backend: str = DEFAULT_BACKEND  # PyTensor backend, see backend.BACKENDS


class TrainingDiverged(RuntimeError):
    """The loss stopped being a finite number; the last checkpoint on disk is kept."""


class _Rewind(Exception):
    """Internal: the divergence guard restored the last good state; the loop starts again from it."""


class TrainingInterrupted(RuntimeError):
    """SIGINT or SIGTERM arrived; the step in progress was finished and a checkpoint written."""

    def __init__(self, signum, path):
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signum, self.path = signum, path


def compile_train_step(params, opt_state, model_cfg, train_cfg):
    """fn(x, y, w, states, [keep,] lr) -> (mean nats per character, final states); applies one update."""
    T, B, H, dtype = train_cfg.seq_len, train_cfg.batch_size, model_cfg.hidden, params["W_y"].dtype
    x = pt.tensor("x", dtype="int32", shape=(T, B))  # input ids
    y = pt.tensor("y", dtype="int32", shape=(T, B))  # target ids
    w = pt.tensor("w", dtype=dtype, shape=(T, B))  # 1 for real characters, 0 for padding
    states0 = pt.tensor("states", dtype=dtype, shape=(model_cfg.state_size, B, H))
    keep = pt.tensor("keep", dtype=dtype, shape=(model_cfg.layers, T, B, H)) if model_cfg.dropout else None
    lr = pt.scalar("lr", dtype=dtype)  # an input, so a schedule never recompiles
    top, finals, tape = bptt.forward(x, states0, params, model_cfg, keep)
    total = (model.token_nll(model.output_logits(top, params), y) * w.reshape((-1,))).sum()
    mean = total / w.sum()
    # Autodiff from the loss down to the top layer's outputs, then the recurrent layers by hand.
    dW_y, db_y, dtop = pytensor.grad(total if train_cfg.loss == "sum" else mean, [params["W_y"], params["b_y"], top])
    grads = {"W_y": dW_y, "b_y": db_y, **bptt.backward(x, dtop, tape, params, model_cfg, keep)}
    grads = [grads[name] for name in params]
    grads = dict(zip(params, optim.clip_by_global_norm(grads, train_cfg.clip), strict=True))
    updates = optim.updates(train_cfg.optimizer, params, grads, opt_state, lr)
    inputs = [x, y, w, states0, *([keep] if keep is not None else []), lr]
    return compile_function(inputs, [mean, finals], updates=updates, backend=train_cfg.backend)


def compile_eval_step(params, model_cfg, shape, backend=DEFAULT_BACKEND):
    """fn(x, y, w, states) -> (summed nats, correct argmax guesses, final states) for (T, B) = `shape`
    batches (static shapes: what JAX compiles); no dropout."""
    dtype, (T, B) = params["W_y"].dtype, shape
    x, y = pt.tensor("x", dtype="int32", shape=(T, B)), pt.tensor("y", dtype="int32", shape=(T, B))
    w = pt.tensor("w", dtype=dtype, shape=(T, B))
    states0 = pt.tensor("states", dtype=dtype, shape=(model_cfg.state_size, B, model_cfg.hidden))
    top, finals = model.run_layers(x, states0, params, model_cfg)
    logits = model.output_logits(top, params)
    weights = w.reshape((-1,))
    total = (model.token_nll(logits, y) * weights).sum()
    correct = (pt.eq(pt.argmax(logits, axis=-1), y.reshape((-1,))) * weights).sum()
    return compile_function([x, y, w, states0], [total, correct, finals], backend=backend)


def evaluate_stream(eval_fn, stream, model_cfg, carry_state, dtype="float32", bar=None):
    """(summed nats, correct guesses, characters) over every target of a BatchStream; a tqdm `bar`
    is given the positions to score and counts them as each batch is scored."""
    total = correct = count = 0.0
    zeros = np.zeros((model_cfg.state_size, stream.B, model_cfg.hidden), dtype=dtype)
    states = zeros
    if bar is not None:
        bar.reset(total=len(stream) * stream.T * stream.B)
    for k in range(len(stream)):
        x, y, w = stream.batch(k)
        nll, right, states = eval_fn(x, y, w.astype(dtype), states if carry_state else zeros)
        total, correct, count = total + float(nll), correct + float(right), count + float(w.sum())
        if bar is not None:
            bar.update(x.size)
    return total, correct, count


class Trainer:
    """One training run writing metrics.jsonl, samples.txt, latest.npz and best.npz into `out_dir`."""

    def __init__(self, vocab, model_cfg, train_cfg, out_dir, log=print, progress=None):
        self.vocab, self.model_cfg, self.cfg = vocab, model_cfg, train_cfg
        self.out_dir = Path(out_dir)
        self.log = log
        self.progress = progress  # tqdm's `disable`: None shows the bar only on a terminal
        self.params = model.shared_params(model.init_params(model_cfg, train_cfg.rng_seed))
        self.opt_state = optim.optimizer_state(train_cfg.optimizer, self.params)
        context = None if train_cfg.carry_state else train_cfg.seq_len
        self.sampler = Sampler(self.params, model_cfg, context, train_cfg.backend)
        self.step = 0  # updates done
        self.epoch = 0  # full passes done
        self.position = 0  # batches done in the current pass
        self.states = None  # (S, B, H) hidden state carried into the next batch
        self.last_loss = None  # mean nats per character over the last logging window
        self.val_loss, self.best_val_loss = None, math.inf
        self.evals_since_best = 0  # for --patience
        self.lr_scale = 1.0  # halved by each recovered divergence
        self.best_window_loss, self.divergences = math.inf, 0  # the divergence guard
        self.eval_fn = None
        self.resumed = False

    def restore(self, params, extras, meta):
        """Continue exactly where a checkpoint written by `checkpoint()` stopped: parameters,
        optimizer state, position in the stream, carried state and random generator."""
        for name, p in self.params.items():
            p.set_value(params[name])
        for name, s in self.opt_state.items():
            s.set_value(np.asarray(extras[f"opt.{name}"], dtype=s.dtype))  # older checkpoints hold a float64 t
        resume = meta["resume"]
        self.step, self.epoch, self.position = meta["step"], resume["epoch"], resume["position"]
        self.states = extras.get("state")
        self.val_loss, self.last_loss = meta.get("val_loss"), meta.get("loss")
        self.best_val_loss = meta.get("best_val_loss") or math.inf
        self.evals_since_best = resume.get("evals_since_best", 0)
        self.lr_scale = resume.get("lr_scale", 1.0)
        self.best_window_loss = resume.get("best_window_loss") or math.inf
        self.resumed = True

    def compile(self):
        """Compile the training step, saying so and where it runs (the evaluation step compiles in `run`,
        once the validation stream's shape is known)."""
        self.device = device(self.cfg.backend)
        self.log(f"compiling the training step with the {self.cfg.backend} backend on {self.device}...")
        start = time.perf_counter()
        self.step_fn = compile_train_step(self.params, self.opt_state, self.model_cfg, self.cfg)
        self.log(f"compiled in {time.perf_counter() - start:.1f} s")

    def run(self, train_ids, val_ids=None):
        """Train until a stop; returns the path of latest.npz."""
        self.stream = BatchStream(train_ids, self.cfg.batch_size, self.cfg.seq_len)
        self.val_stream = None
        if val_ids is not None and len(val_ids) > 1 and self.cfg.val_frac > 0:
            self.val_stream = eval_stream(val_ids, self.cfg.batch_size, self.cfg.seq_len)
            shape = (self.val_stream.T, self.val_stream.B)
            self.eval_fn = compile_eval_step(self.params, self.model_cfg, shape, self.cfg.backend)
        self.char_counts = id_counts(train_ids, len(self.vocab))  # for eval's unigram baseline
        self.seed_ids = train_ids[: self.cfg.seq_len]
        self.corpus_id = corpus_fingerprint(train_ids)
        for name in ("metrics.jsonl", "samples.txt"):  # a new run starts its logs afresh; a resumed one appends
            if not self.resumed:
                (self.out_dir / name).write_text("", encoding="utf-8")
        self.stop_signal = None
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            self._run_with_bar()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        if self.stop_signal:
            raise TrainingInterrupted(self.stop_signal, self.out_dir / "latest.npz")
        return self.out_dir / "latest.npz"

    def _run_with_bar(self):
        total = len(self.stream) * self.cfg.epochs
        if self.cfg.max_steps is not None:
            total = min(total, self.cfg.max_steps)
        self.total_steps = total
        self.start_time = self.window_start = time.perf_counter()
        self.first_update = True  # not done yet: JAX compiles on this first call, so say when it is done
        self.paused = 0.0  # seconds of the current window spent on evaluation, checkpoints and samples
        per_step = self.cfg.seq_len * self.cfg.batch_size
        with tqdm(total=total * per_step, initial=self.step * per_step, unit="char", unit_scale=True,
                  desc=f"{self.cfg.backend} on {self.device}",
                  disable=self.progress, file=sys.stderr, dynamic_ncols=True, smoothing=0.05) as self.bar:
            self._loop()
            if self.val_stream is not None and self.val_loss_step != self.step:
                self.evaluate()
        if self.step % self.cfg.checkpoint_every or self.stop_signal:
            self.checkpoint()

    def _on_signal(self, signum, frame):
        self.stop_signal = signum  # the loop finishes its step, then stops and checkpoints

    def _should_stop(self):
        over_time = self.cfg.max_time is not None and time.perf_counter() - self.start_time >= self.cfg.max_time
        patience = self.cfg.patience is not None and self.evals_since_best >= self.cfg.patience
        return self.step >= self.total_steps or over_time or patience or bool(self.stop_signal)

    def _loop(self):
        self.val_loss_step = None
        self.window = []  # per-update losses since the last log line
        self._snapshot()
        while self.epoch < self.cfg.epochs and not self._should_stop():
            try:
                with np.errstate(all="ignore"):  # overflow shows up as a non-finite loss: the guard's job
                    self._epoch()
            except _Rewind:
                continue  # back at the last good state, with a lower learning rate

    def _epoch(self):
        lr = np.asarray(self.current_lr(), dtype=self.params["W_y"].dtype)
        if self.position == 0 or self.states is None:
            self.states = self.zero_states(self.cfg.batch_size)  # reset at each epoch
        batch, keep = self._inputs(self.position, self.step)
        for k in range(self.position, len(self.stream)):
            if not self.cfg.carry_state:
                self.states = self.zero_states(self.cfg.batch_size)
            loss, self.states = self.step_fn(*batch, self.states, *keep, lr)
            if k + 1 < len(self.stream):  # made while the update runs: JAX returns before it is done
                batch, keep = self._inputs(k + 1, self.step + 1)
            self._after_step(float(loss), k)
            if self.step % self.cfg.log_every == 0 or self._should_stop():
                self._check_window()
                self._log_metrics(self.window)
                self.window = []
                self._snapshot()
            if self.step % self.cfg.eval_every == 0 and self.val_stream is not None:
                self.evaluate()
            if self.step % self.cfg.checkpoint_every == 0:
                self.checkpoint()
            if self._should_stop():
                return
        self.epoch, self.position = self.epoch + 1, 0
        if self.val_stream is not None and self.val_loss_step != self.step:
            self.evaluate()

    def _after_step(self, loss, k):
        if not math.isfinite(loss):
            self._diverge(f"the loss became {loss}")
        if self.first_update:
            self.log(f"first update done in {time.perf_counter() - self.window_start:.2f} s; training")
            self.first_update = False
        self.window.append(loss)
        self.step += 1
        self.position = k + 1  # batches done in the current epoch
        self.bar.update(self.cfg.seq_len * self.cfg.batch_size)
        if self.step % 10 == 0:
            val = f", val {self.val_loss:.3f}" if self.val_loss is not None else ""
            self.bar.set_postfix_str(f"loss {np.mean(self.window[-100:]):.3f}{val} nats/char", refresh=False)

    def _check_window(self):
        """char-rnn's rule on the logging window's mean loss: more than 3x the best window diverges."""
        mean = float(np.mean(self.window))
        if mean > 3 * self.best_window_loss:
            self._diverge(f"the loss {mean:.3f} is more than 3x the best {self.best_window_loss:.3f}")
        self.best_window_loss = min(self.best_window_loss, mean)
        self.divergences = 0

    def _snapshot(self):
        """Remember the current state as the last good one (at each log line)."""
        self.good = {
            "arrays": {name: v.get_value() for name, v in {**self.params, **self.opt_state}.items()},
            "states": None if self.states is None else self.states.copy(),
            "where": (self.step, self.epoch, self.position),
        }

    def _diverge(self, reason):
        """Go back to the last good state with half the learning rate; abort on the third time in a row."""
        self.divergences += 1
        if self.divergences >= 3:
            raise TrainingDiverged(f"{reason} at update {self.step + 1}, the third time in a row even after "
                                   f"halving the learning rate; nothing of it was saved")
        for name, v in {**self.params, **self.opt_state}.items():
            v.set_value(self.good["arrays"][name])
        self.states = None if self.good["states"] is None else self.good["states"].copy()
        self.step, self.epoch, self.position = self.good["where"]
        self.window, self.lr_scale = [], self.lr_scale / 2
        self.bar.n = self.step * self.cfg.seq_len * self.cfg.batch_size
        self.log(f"{reason}: back to update {self.step} with the learning rate halved to {self.current_lr():.3g}")
        raise _Rewind

    def current_lr(self):
        """char-rnn's schedule: lr times lr_decay for every epoch done beyond lr_decay_after - 1
        (and halved for each divergence the guard recovered from)."""
        return self.lr_scale * self.cfg.lr * self.cfg.lr_decay ** max(0, self.epoch - self.cfg.lr_decay_after + 1)

    def zero_states(self, batch_size):
        return np.zeros((self.model_cfg.state_size, batch_size, self.model_cfg.hidden), dtype=self.params["W_y"].dtype)

    def _inputs(self, k, step):
        """Batch k's (x, y, w) and the dropout multipliers of update `step` (a list, empty without dropout)."""
        x, y, w = self.stream.batch(k)
        return (x, y, w.astype(self.params["W_y"].dtype)), self._dropout_keep(step)

    def _dropout_keep(self, step):
        """Inverted-dropout multipliers (0 or 1/(1-p)) for each layer's output at update `step`, drawn
        on the host from a generator seeded by (rng_seed, step): resuming, and the divergence guard
        going back, draw the same masks again without keeping any generator state."""
        p = self.model_cfg.dropout
        if not p:
            return []
        shape = (self.model_cfg.layers, self.cfg.seq_len, self.cfg.batch_size, self.model_cfg.hidden)
        keep = np.random.default_rng([self.cfg.rng_seed, 1, step]).random(shape, dtype=np.float32) >= p
        return [keep.astype(self.params["W_y"].dtype) / np.asarray(1 - p, dtype=self.params["W_y"].dtype)]

    def evaluate(self):
        """Mean nats per character over the validation part; keeps best.npz at the lowest."""
        start = time.perf_counter()
        # A pass over a large corpus's validation part takes a while (5 MB: over a minute): show it.
        with tqdm(unit="char", unit_scale=True, desc="validation", leave=False, disable=self.progress,
                  file=sys.stderr, dynamic_ncols=True) as bar:
            total, _, count = evaluate_stream(self.eval_fn, self.val_stream, self.model_cfg, self.cfg.carry_state,
                                              self.params["W_y"].dtype, bar)
        self.val_loss, self.val_loss_step = total / count, self.step
        self._write_metrics({"val_loss": round(self.val_loss, 6), "val_bpc": round(self.val_loss / math.log(2), 6)})
        note = ""
        self.evals_since_best += 1
        if self.val_loss < self.best_val_loss:
            self.best_val_loss, self.evals_since_best = self.val_loss, 0
            self._save("best.npz")
            note = " (best so far: best.npz)"
        self.log(f"step {self.step}: validation loss {self.val_loss:.4f} nats/char, "
                 f"{self.val_loss / math.log(2):.4f} bits/char{note}")
        self.paused += time.perf_counter() - start

    def _log_metrics(self, window):
        now = time.perf_counter()
        chars = len(window) * self.cfg.seq_len * self.cfg.batch_size
        rate = chars / max(now - self.window_start - self.paused, 1e-9)
        self.window_start, self.paused = now, 0.0
        self.last_loss = float(np.mean(window))
        self._write_metrics({"loss": round(self.last_loss, 6), "lr": self.current_lr(),
                             "chars_per_s": round(rate, 1)})  # training only: evaluation and checkpoints excluded
        self.log(f"step {self.step}: loss {self.last_loss:.4f} nats/char, {rate:.0f} chars/s")

    def _write_metrics(self, fields):
        record = {
            "step": self.step,
            "epoch": round(self.epochs_done(), 4),
            "chars": self.step * self.cfg.seq_len * self.cfg.batch_size,
            **fields,
            "elapsed_s": round(time.perf_counter() - self.start_time, 3),
        }
        with open(self.out_dir / "metrics.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")

    def epochs_done(self):
        """Passes over the training part, fractional."""
        return self.epoch + self.position / len(self.stream)

    def checkpoint(self):
        """Write latest.npz, then append a sample from the current weights to samples.txt."""
        start = time.perf_counter()
        path = self._save("latest.npz")
        text = self.vocab.decode(self.sampler.generate(self.seed_ids, self.cfg.sample_length, 1.0, self.step))
        seed = self.vocab.decode(self.seed_ids)
        with open(self.out_dir / "samples.txt", "a", encoding="utf-8") as f:
            f.write(f"--- step {self.step}, loss {self.last_loss} ---\n{seed}{text}\n")
        self.log(f"checkpoint {path} (step {self.step}); sample:\n{seed}{text}")
        self.paused += time.perf_counter() - start

    def _save(self, name):
        arrays = {name: p.get_value() for name, p in self.params.items()}
        arrays.update({f"opt.{name}": s.get_value() for name, s in self.opt_state.items()})
        if self.states is not None:
            arrays["state"] = self.states
        checkpoint.save(self.out_dir / name, arrays, self.metadata())
        return self.out_dir / name

    def metadata(self):
        return {
            "charrnn_version": __version__,
            "vocab": self.vocab.to_json(),
            "model": asdict(self.model_cfg),
            "train": asdict(self.cfg),
            "step": self.step,
            "epoch": self.epochs_done(),
            "loss": self.last_loss,
            "val_loss": self.val_loss,
            "best_val_loss": _finite_or_none(self.best_val_loss),
            "char_counts": self.char_counts.tolist(),  # per id, in the training part
            "resume": {  # what --resume needs beyond the arrays
                "epoch": self.epoch, "position": self.position, "corpus": self.corpus_id,
                "evals_since_best": self.evals_since_best,
                "lr_scale": self.lr_scale, "best_window_loss": _finite_or_none(self.best_window_loss),
            },
        }


def _finite_or_none(x):
    return x if math.isfinite(x) else None


def corpus_fingerprint(ids):
    """Length and hash of the training ids, so --resume can tell the same corpus from another."""
    digest = hashlib.sha256()
    for start in range(0, len(ids), CHUNK):  # a chunk at a time: the ids may be a memory map
        digest.update(np.ascontiguousarray(ids[start : start + CHUNK]))
    return f"{len(ids)}:{digest.hexdigest()[:16]}"
