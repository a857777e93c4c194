"""Compiling the training step and running the training loop: progress, metrics, samples, checkpoints."""
import json
import math
import signal
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pytensor.tensor as pt
from tqdm import tqdm

from charrnn import __version__, checkpoint, model, optim
from charrnn.backend import DEFAULT_BACKEND, compile_function
from charrnn.corpus import as_column, sequences
from charrnn.sample import Sampler


@dataclass(frozen=True)
class TrainConfig:
    seq_len: int = 8  # lesson 6: cs = 8; inputs i..i+7, targets i+1..i+8
    lr: float = 0.01  # lesson 6 SGD learning rate on the summed loss
    epochs: int = 1  # passes over the corpus
    max_steps: int | None = None  # stop after this many updates (one per sequence)
    log_every: int = 1000  # sequences between metrics.jsonl entries
    checkpoint_every: int = 10000  # sequences between checkpoints and samples
    sample_length: int = 200  # characters in each training-time sample
    rng_seed: int = 0  # weight initialisation and sample draws
    backend: str = DEFAULT_BACKEND  # PyTensor backend, see backend.BACKENDS


class TrainingDiverged(RuntimeError):
    """The loss stopped being a finite number; the last checkpoint on disk is kept."""


class TrainingInterrupted(RuntimeError):
    """SIGINT or SIGTERM arrived; the step in progress was finished and a checkpoint written."""

    def __init__(self, signum, path):
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signum, self.path = signum, path


def compile_train_step(params, seq_len, backend=DEFAULT_BACKEND):
    """fn(x, y, lr) -> summed loss of one (T, 1) sequence, applying one SGD update to `params`."""
    dtype = params["W_h"].dtype
    x = pt.tensor("x", dtype="int32", shape=(seq_len, 1))  # (T, B) input ids
    y = pt.tensor("y", dtype="int32", shape=(seq_len, 1))  # (T, B) target ids
    lr = pt.scalar("lr", dtype=dtype)  # an input, so changing it never recompiles
    h0 = pt.zeros((1, params["W_h"].get_value(borrow=True).shape[0]), dtype=dtype)  # fresh state per sequence
    loss = model.sequence_loss(model.output_logits(model.hidden_states(x, h0, params), params), y)
    return compile_function([x, y, lr], loss, updates=optim.sgd(params, loss, lr), backend=backend)


class Trainer:
    """One training run writing metrics.jsonl, samples.txt and latest.npz into `out_dir`."""

    def __init__(self, vocab, model_cfg, train_cfg, out_dir, log=print, progress=None):
        self.vocab, self.model_cfg, self.cfg = vocab, model_cfg, train_cfg
        self.out_dir = Path(out_dir)
        self.log = log
        self.progress = progress  # tqdm's `disable`: None shows the bar only on a terminal
        self.params = model.shared_params(model.init_params(model_cfg, train_cfg.rng_seed))
        self.sampler = Sampler(self.params, train_cfg.seq_len, train_cfg.backend)
        self.step = 0
        self.last_loss = None  # mean nats per character over the last logging window

    def compile(self):
        """Compile the training step, saying so: a first run on a machine compiles C code."""
        self.log(f"compiling the training step with the {self.cfg.backend} backend (cached after the first run)...")
        start = time.perf_counter()
        self.step_fn = compile_train_step(self.params, self.cfg.seq_len, self.cfg.backend)
        self.log(f"compiled in {time.perf_counter() - start:.1f} s")

    def run(self, ids):
        """Train on the (N,) ids with one SGD update per sequence; returns the path of latest.npz."""
        inputs, targets = sequences(ids, self.cfg.seq_len)
        self.steps_per_epoch = len(inputs)
        total = len(inputs) * self.cfg.epochs
        if self.cfg.max_steps is not None:
            total = min(total, self.cfg.max_steps)
        self.seed_ids = ids[: self.cfg.seq_len]
        self.start_time = self.window_start = time.perf_counter()
        self.paused = 0.0  # seconds of the current window spent on checkpoints and samples
        self.stop_signal = None
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            with tqdm(total=total * self.cfg.seq_len, unit="char", unit_scale=True, disable=self.progress,
                      file=sys.stderr, dynamic_ncols=True, smoothing=0.05) as bar:
                self._loop(inputs, targets, total, bar)
            if self.step % self.cfg.checkpoint_every or self.stop_signal:
                self.checkpoint()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        if self.stop_signal:
            raise TrainingInterrupted(self.stop_signal, self.out_dir / "latest.npz")
        return self.out_dir / "latest.npz"

    def _on_signal(self, signum, frame):
        self.stop_signal = signum  # the loop finishes its step, then stops and checkpoints

    def _loop(self, inputs, targets, total, bar):
        lr = np.asarray(self.cfg.lr, dtype=self.params["W_h"].dtype)
        window = []
        while self.step < total and not self.stop_signal:
            i = self.step % len(inputs)
            loss = float(self.step_fn(as_column(inputs[i]), as_column(targets[i]), lr))
            if not math.isfinite(loss):
                raise TrainingDiverged(f"the loss became {loss} at step {self.step + 1}; try a lower --lr")
            window.append(loss)
            self.step += 1
            bar.update(self.cfg.seq_len)
            if self.step % 100 == 0:
                bar.set_postfix_str(f"loss {np.mean(window[-100:]) / self.cfg.seq_len:.3f} nats/char", refresh=False)
            if self.step % self.cfg.log_every == 0 or self.step == total or self.stop_signal:
                self._log_metrics(window)
                window = []
            if self.step % self.cfg.checkpoint_every == 0:
                self.checkpoint()

    def _log_metrics(self, window):
        now = time.perf_counter()
        rate = len(window) * self.cfg.seq_len / max(now - self.window_start - self.paused, 1e-9)
        self.window_start, self.paused = now, 0.0
        self.last_loss = float(np.mean(window)) / self.cfg.seq_len
        chars = self.step * self.cfg.seq_len
        record = {
            "step": self.step,
            "epoch": round(self.step / self.steps_per_epoch, 4),
            "chars": chars,
            "loss": round(self.last_loss, 6),
            "lr": self.cfg.lr,
            "chars_per_s": round(rate, 1),  # training only: checkpoints and samples excluded
            "elapsed_s": round(now - self.start_time, 3),
        }
        with open(self.out_dir / "metrics.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        self.log(f"step {self.step}: loss {self.last_loss:.4f} nats/char, {record['chars_per_s']:.0f} chars/s")

    def checkpoint(self):
        """Write latest.npz, then append a sample from the current weights to samples.txt."""
        start = time.perf_counter()
        params = {name: p.get_value() for name, p in self.params.items()}
        path = self.out_dir / "latest.npz"
        checkpoint.save(path, params, self.metadata())
        text = self.vocab.decode(self.sampler.generate(self.seed_ids, self.cfg.sample_length, 1.0, self.step))
        seed = self.vocab.decode(self.seed_ids)
        with open(self.out_dir / "samples.txt", "a", encoding="utf-8") as f:
            f.write(f"--- step {self.step}, loss {self.last_loss} ---\n{seed}{text}\n")
        self.log(f"checkpoint {path} (step {self.step}); sample:\n{seed}{text}")
        self.paused += time.perf_counter() - start

    def metadata(self):
        return {
            "charrnn_version": __version__,
            "vocab": self.vocab.to_json(),
            "model": asdict(self.model_cfg),
            "train": asdict(self.cfg),
            "step": self.step,
            "epoch": self.step / self.steps_per_epoch,
            "loss": self.last_loss,
        }
