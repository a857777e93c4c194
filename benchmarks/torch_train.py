"""PyTorch's own layers trained as `charrnn train` would train them, for a time budget: the reference
issue 14 compares charrnn's validation loss against.

    python benchmarks/torch_train.py --max-time 20m                  # the default configuration
    python benchmarks/torch_train.py --max-time 20m -- --cell lstm --hidden 512 --dropout 0.3
    python benchmarks/torch_train.py corpus.txt --max-steps 20 --hidden 16 --log-every 5
    python benchmarks/torch_train.py --max-time 20m --name default --append benchmarks/sweep_results.jsonl

Every option of `charrnn train` is accepted (its own click definitions parse them, so the
configuration is charrnn's: defaults, --preset, CHARRNN_* variables), before or after a `--`; this
script adds --threads, --name and --append. CORPUS defaults to shared/data/tinyshakespeare.txt.
--backend and --unroll change only how fast charrnn computes an update, so they change nothing here;
--precision bfloat16 runs the forward pass under torch.autocast(bfloat16), as does auto (the default)
where charrnn's auto would compute in bfloat16 (precision.resolve); --resume is refused.

What is charrnn's and what is PyTorch's:

- charrnn's: the corpus's ids and vocabulary (idcache), the train/validation split, the training
  batch stream (the state carried within an epoch when the configuration carries it, reset at each
  epoch), the validation streams and their scoring (summed nats over the held-out tail read as
  `--batch-size` streams from a zero state, without dropout, over the characters scored), the
  learning rate of each update (TrainState.lr: schedule.factor with schedule.Budget's progress),
  the budget's clock (it starts before the first update and counts updates, validation passes,
  checkpoints and samples), the evaluation, logging and checkpoint cadence, the stops (--epochs,
  --max-steps, --max-time, --patience) and the divergence guard's verdicts.
- PyTorch's: nn.RNN / nn.GRU / nn.LSTM (one-hot input, the layers stacked with dropout between them,
  dropout before an nn.Linear output), their default initialisation, torch.optim's SGD, SGD with
  momentum, RMSprop and Adam with charrnn's hyperparameters (which are PyTorch's defaults),
  clip_grad_norm_ (the same formula as charrnn's clip), the dropout masks (torch's generator,
  seeded with --rng-seed), and checkpoints written with torch.save. The checkpoints' samples read
  the seed with the state carried whatever --carry-state says (they are there for their cost).

It writes OUT/metrics.jsonl (the lines charrnn writes), samples.txt, latest.pt and best.pt (OUT:
--out, else a new temporary directory), and prints one JSON line on stdout: best_val_loss, at_step,
at_epoch, final_val_loss, updates, epochs, chars_per_s_median, wall_s, the torch version and threads,
the configuration. --append FILE adds the line to FILE (benchmarks/sweep_results.jsonl: its stage is
"torch", which sweep.py's stages never read). Not part of the test suite.
"""
import contextlib
import copy
import json
import math
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import click
import numpy as np
import torch
from torch import nn

from charrnn import configs, idcache, optim, precision
from charrnn.cli import Command, train as train_command
from charrnn.corpus import BatchStream, check_sizes, eval_stream, split
from charrnn.options import ENV
from charrnn.schedule import Budget, peak
from charrnn.train import DivergenceGuard, TrainingDiverged, TrainState, epochs_done

HERE = Path(__file__).resolve().parent
CORPUS = HERE.parents[1] / "shared" / "data" / "tinyshakespeare.txt"


# ---------------------------------------------------------------------------------------- network

class Net(nn.Module):
    """train_speed.torch_worker's network: one-hot input, recurrent layers with dropout between them,
    dropout, a linear output."""

    def __init__(self, model_cfg):
        super().__init__()
        V, H, L = model_cfg.vocab_size, model_cfg.hidden, model_cfg.layers
        rnn_class = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}[model_cfg.cell]
        kwargs = {"nonlinearity": model_cfg.activation} if model_cfg.cell == "rnn" else {}
        self.rnn = rnn_class(V, H, L, dropout=model_cfg.dropout if L > 1 else 0.0, **kwargs)
        self.drop, self.out, self.V = nn.Dropout(model_cfg.dropout), nn.Linear(H, V), V

    def forward(self, x, state):
        """(T, B) int64 ids from `state` -> (T, B, V) logits and the final state."""
        hs, final = self.rnn(nn.functional.one_hot(x, self.V).float(), state)
        return self.out(self.drop(hs)), final


def zero_state(model_cfg, batch_size):
    """What every stream starts from: (L, B, H) zeros, or (h, c) of them for an LSTM."""
    zeros = torch.zeros(model_cfg.layers, batch_size, model_cfg.hidden)
    return (zeros, zeros) if model_cfg.cell == "lstm" else zeros


def detached(state):
    return tuple(s.detach() for s in state) if isinstance(state, tuple) else state.detach()


def optimizer(cfg, params):
    """charrnn's optimizer (charrnn/optim.py: PyTorch's defaults) as torch.optim's."""
    if cfg.optimizer in ("sgd", "momentum"):
        return torch.optim.SGD(params, lr=peak(cfg), momentum=optim.MOMENTUM if cfg.optimizer == "momentum" else 0.0)
    if cfg.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=peak(cfg), alpha=optim.RMS_ALPHA, eps=optim.EPS)
    return torch.optim.Adam(params, lr=peak(cfg), betas=optim.ADAM_BETAS, eps=optim.EPS)


def batch(stream, k):
    """Batch k of a charrnn BatchStream as tensors: (T, B) int64 inputs and targets, float32 weights."""
    x, y, w = stream.batch(k)
    w = np.require(w, requirements="W")  # a batch without padding shares its read-only weights
    return torch.from_numpy(x).long(), torch.from_numpy(y).long(), torch.from_numpy(w)


def summed_nll(logits, y, w):
    """Summed nats of the weighted targets (padding weighs 0)."""
    nll = nn.functional.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), y.reshape(-1), reduction="none")
    return (nll * w.reshape(-1)).sum()


class Snapshot:
    """A module's or optimizer's state dict behind the get_value/set_value of charrnn's shared
    variables, so that charrnn's DivergenceGuard can keep and restore it."""

    def __init__(self, owner):
        self.owner = owner

    def get_value(self):
        return copy.deepcopy(self.owner.state_dict())

    def set_value(self, value):
        self.owner.load_state_dict(copy.deepcopy(value))  # the kept copy stays intact for a later recovery


class Guard(DivergenceGuard):
    """charrnn's divergence guard (its verdicts, strikes and halving) over the torch network and optimizer."""

    def __init__(self, net, opt):
        super().__init__({"net": Snapshot(net), "opt": Snapshot(opt)})

    def remember(self, state, carried):
        super().remember(state, None)
        self.carried = carried  # never changed in place: each update makes a new state

    def recover(self, state, reason):
        super().recover(state, reason)
        return self.carried


# ------------------------------------------------------------------------------------------- run

class TorchRun:
    """Trainer._loop and _after_update, step for step, with a torch network doing the updates."""

    def __init__(self, vocab, model_cfg, cfg, train_ids, val_ids, out_dir, log):
        self.vocab, self.model_cfg, self.cfg, self.out_dir, self.log = vocab, model_cfg, cfg, out_dir, log
        torch.manual_seed(cfg.rng_seed)
        self.net = Net(model_cfg)
        self.opt = optimizer(cfg, list(self.net.parameters()))
        self.guard = Guard(self.net, self.opt)
        self.stream = BatchStream(train_ids, cfg.batch_size, cfg.seq_len)
        self.budget = Budget(cfg, len(self.stream))
        usable = val_ids is not None and len(val_ids) >= 2 and cfg.val_frac  # as evaluate.validation_step
        self.val_stream = eval_stream(val_ids, cfg.batch_size, cfg.seq_len) if usable else None
        self.zeros = zero_state(model_cfg, cfg.batch_size)
        self.state, self.states, self.val_loss_step, self.best_at = TrainState(), None, None, None
        self.seed_ids = np.asarray(train_ids[: cfg.seq_len], dtype=np.int64)
        self.chars_per_step = cfg.batch_size * cfg.seq_len
        self.window, self.records, self.applied_lrs = [], [], []
        bfloat16 = precision.resolve(cfg.precision, "jax") == "bfloat16"  # auto: as charrnn's on this machine
        self.mixed = (lambda: torch.autocast("cpu", torch.bfloat16)) if bfloat16 else contextlib.nullcontext
        (out_dir / "metrics.jsonl").write_text("", encoding="utf-8")
        (out_dir / "samples.txt").write_text("", encoding="utf-8")

    def elapsed(self):
        return time.perf_counter() - self.start

    def should_stop(self):
        s, cfg = self.state, self.cfg
        patience = cfg.patience is not None and s.evals_since_best >= cfg.patience
        return self.budget.spent(s.step, self.elapsed()) or patience

    def run(self):
        """Train until a stop, as Trainer.run: the loop, a last log line, a last validation pass."""
        s = self.state
        self.start = self.window_start = time.perf_counter()  # the budget's clock
        self.paused = 0.0
        self.guard.remember(s, self.states)
        while s.epoch < self.cfg.epochs and not self.should_stop():
            if s.position == len(self.stream):  # --- an epoch is done
                if not self.diverged(self.guard.loss_verdict(s, self.window)):
                    s.epoch, s.position = s.epoch + 1, 0
                    self.evaluate()
                continue
            seconds = self.elapsed()
            if self.budget.measure(s, seconds) and self.budget.choose_lr(s):
                self.log(self.budget.chosen(s))
            s.progress = self.budget.progress(s.step, seconds)  # of the schedule
            self.window.append(self.update(s.lr(self.cfg)))
            s.step, s.position = s.step + 1, s.position + 1
            self.after_update()
        self.after_update(stopped=True)
        self.evaluate()
        self.train_s = self.elapsed()
        if s.step % self.cfg.checkpoint_every:
            self.checkpoint()

    def after_update(self, stopped=False):
        """Logging, evaluation and checkpoints where due, as Trainer._after_update."""
        s, cfg = self.state, self.cfg
        log = bool(self.window) if stopped else s.step % cfg.log_every == 0 or self.should_stop()
        evaluate = not stopped and s.step % cfg.eval_every == 0 and self.val_stream is not None
        save = not stopped and s.step % cfg.checkpoint_every == 0
        if (log or evaluate or save) and self.diverged(self.guard.loss_verdict(s, self.window)):
            return
        if log:
            if not stopped and self.diverged(self.guard.window_verdict(s, self.window)):
                return
            self.close_window()
            self.guard.remember(s, self.states)
        if evaluate:
            self.evaluate()
        if save:
            self.checkpoint()

    def update(self, lr):
        """One update on the current batch at learning rate `lr`; returns its mean nats per character."""
        s, cfg = self.state, self.cfg
        if s.position == 0 or self.states is None or not cfg.carry_state:
            self.states = self.zeros  # at each epoch (or chunk)
        x, y, w = batch(self.stream, s.position)
        for group in self.opt.param_groups:
            group["lr"] = lr
        self.applied_lrs.append((s.step, lr))
        with self.mixed():
            logits, final = self.net(x, self.states)
        total = summed_nll(logits, y, w)
        mean = total / w.sum()
        self.opt.zero_grad(set_to_none=True)
        (total if cfg.loss == "sum" else mean).backward()
        if cfg.clip:
            nn.utils.clip_grad_norm_(self.net.parameters(), cfg.clip)  # min(1, clip / (norm + 1e-6)), as charrnn
        self.opt.step()
        self.states = detached(final)
        return mean.item()

    def diverged(self, reason):
        """With a verdict from the guard: back to the last good state, the learning rate halved; True then."""
        if reason is None:
            return False
        self.states = self.guard.recover(self.state, reason)
        self.window = []
        self.log(f"{reason}: back to update {self.state.step} with the learning rate halved to "
                 f"{self.state.lr(self.cfg):.3g}")
        return True

    @torch.no_grad()
    def evaluate(self):
        """The validation pass of charrnn's training (evaluate.evaluate_stream): mean nats per character."""
        start, s = time.perf_counter(), self.state
        if self.val_stream is None or self.val_loss_step == s.step:
            return
        self.net.eval()
        zeros = zero_state(self.model_cfg, self.val_stream.B)
        total = count = 0.0
        states = zeros
        for k in range(len(self.val_stream)):
            x, y, w = batch(self.val_stream, k)
            logits, final = self.net(x, states if self.cfg.carry_state else zeros)
            total, count, states = total + float(summed_nll(logits, y, w)), count + float(w.sum()), final
        self.net.train()
        best, self.val_loss_step = s.record_validation(total / count), s.step
        if best:
            self.save("best.pt")
            self.best_at = (s.step, epochs_done(s, len(self.stream)))
        self.write({"val_loss": round(s.val_loss, 6), "val_bpc": round(s.val_loss / math.log(2), 6)})
        self.log(f"step {s.step}: validation loss {s.val_loss:.4f} nats/char{' (best so far)' if best else ''}")
        self.paused += time.perf_counter() - start

    def close_window(self):
        """A metrics line: the window's mean loss, the lr as charrnn logs it, chars/s of training only."""
        s, now = self.state, time.perf_counter()
        rate = len(self.window) * self.chars_per_step / max(now - self.window_start - self.paused, 1e-9)
        s.loss = float(np.mean(self.window))
        self.write({"loss": round(s.loss, 6), "lr": s.lr(self.cfg), "chars_per_s": round(rate, 1)})
        self.log(f"step {s.step}: loss {s.loss:.4f} nats/char, lr {s.lr(self.cfg):.6g}, {rate:.0f} chars/s")
        self.window_start, self.paused, self.window = now, 0.0, []

    def write(self, record):
        s = self.state
        line = {"step": s.step, "epoch": round(epochs_done(s, len(self.stream)), 4),
                "chars": s.step * self.chars_per_step, **record, "elapsed_s": round(self.elapsed(), 3)}
        self.records.append(line)
        with open(self.out_dir / "metrics.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(line) + "\n")

    def checkpoint(self):
        """latest.pt and a sample from the current weights, as charrnn's checkpoints (their time counts)."""
        start, s = time.perf_counter(), self.state
        self.save("latest.pt")
        seed = self.vocab.decode(self.seed_ids)
        text = self.vocab.decode(self.sample(self.cfg.sample_length, s.step))
        with open(self.out_dir / "samples.txt", "a", encoding="utf-8") as f:
            f.write(f"--- step {s.step}, loss {s.loss} ---\n{seed}{text}\n")
        self.log(f"checkpoint {self.out_dir / 'latest.pt'} (step {s.step}); sample:\n{seed}{text}")
        self.paused += time.perf_counter() - start

    def save(self, name):
        path = self.out_dir / name
        torch.save({"net": self.net.state_dict(), "opt": self.opt.state_dict(), "states": self.states,
                    "step": self.state.step}, path.with_suffix(".tmp"))
        os.replace(path.with_suffix(".tmp"), path)

    @torch.no_grad()
    def sample(self, length, seed):
        """`length` ids drawn at temperature 1 after reading the seed ids, the state carried throughout."""
        self.net.eval()
        generator = torch.Generator().manual_seed(seed)
        logits, state = self.net(torch.from_numpy(self.seed_ids)[:, None], zero_state(self.model_cfg, 1))
        drawn = []
        for _ in range(length):
            c = torch.multinomial(torch.softmax(logits[-1, 0], -1), 1, generator=generator)
            drawn.append(int(c))
            logits, state = self.net(c.view(1, 1), state)
        self.net.train()
        return np.asarray(drawn)


# ---------------------------------------------------------------------------------------- results

def result(run, given, name, threads, wall_s, load):
    """The JSON line of a finished run."""
    vals = [r for r in run.records if "val_loss" in r]
    rates = sorted(r["chars_per_s"] for r in run.records if "chars_per_s" in r)
    cfg, s = run.cfg, run.state
    budget = (f"{cfg.max_time / 60:g}m" if cfg.max_time % 60 == 0 else f"{cfg.max_time:g}s") if cfg.max_time else None
    return {
        "name": name, "stage": "torch", "schedule": cfg.lr_schedule, "lr": cfg.lr, "rng_seed": cfg.rng_seed,
        "chosen_lr": s.peak_lr, "options": given, "budget": budget, "max_steps": cfg.max_steps,
        "best_val_loss": s.best_val_loss if vals else None,
        "best_val_bpc": s.best_val_loss / math.log(2) if vals else None,
        "at_step": run.best_at[0] if run.best_at else None,
        "at_epoch": round(run.best_at[1], 4) if run.best_at else None,
        "final_val_loss": vals[-1]["val_loss"] if vals else None, "updates": s.step,
        "epochs": round(epochs_done(s, len(run.stream)), 4),
        "final_lr": next((r["lr"] for r in reversed(run.records) if "lr" in r), None),
        "lr_halvings": round(-math.log2(s.lr_scale)),
        "chars_per_s_median": rates[len(rates) // 2] if rates else None, "train_s": round(run.train_s, 1),
        "wall_s": round(wall_s, 1), "load_before": round(load, 2), "out": str(run.out_dir),
        "model": asdict(run.model_cfg), "train": {k: v for k, v in asdict(cfg).items() if k != "max_time"},
        "torch": torch.__version__, "threads": threads, **environment(),
    }


def environment():
    commit = subprocess.run(["git", "-C", str(HERE), "describe", "--always", "--dirty"], capture_output=True,
                            text=True).stdout.strip()
    return {"commit": commit, "date": time.strftime("%Y-%m-%d %H:%M"), "python": platform.python_version(),
            "device": "cpu"}


# ------------------------------------------------------------------------------------------- CLI

OWN = [
    click.Option(["--threads"], type=click.IntRange(min=1), help="PyTorch threads. [default: every core]"),
    click.Option(["--name"], help="The run's name in the results line. [default: torch-CELLLAYERSxHIDDEN-dropD]"),
    click.Option(["--append"], type=click.Path(dir_okay=False),
                 help="Also append the results line to this jsonl file (benchmarks/sweep_results.jsonl)."),
]
NOT_TRAINING = ("corpus", "encoding", "preset", "resume", "out", "quiet", "threads", "name", "append")


def main(corpus, encoding, preset, resume, out, quiet, threads, name, append, **options):
    started, load = time.time(), os.getloadavg()[0]
    if resume:
        raise click.UsageError("--resume is charrnn's; this benchmark always starts a fresh run")
    log = (lambda msg: None) if quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))
    vocab, ids = idcache.training_ids(str(corpus or CORPUS), encoding, log)
    model_cfg, cfg = configs.build_configs(len(vocab), preset, **options)
    train_ids, val_ids = split(ids, cfg.val_frac)
    check_sizes(len(train_ids), len(val_ids), cfg.batch_size, cfg.seq_len, cfg.val_frac)
    threads = threads or os.cpu_count()
    torch.set_num_threads(threads)
    out_dir = Path(out) if out else Path(tempfile.mkdtemp(prefix="torch-train-"))
    out_dir.mkdir(parents=True, exist_ok=True)
    log(f"corpus: {len(ids):,} characters ({len(val_ids):,} for validation), vocabulary of {len(vocab)}; "
        f"torch {torch.__version__}, {threads} threads; writing {out_dir}")
    run = TorchRun(vocab, model_cfg, cfg, train_ids, val_ids, out_dir, log)
    try:
        run.run()
    except TrainingDiverged as e:
        raise click.ClickException(str(e)) from None
    name = name or f"torch-{model_cfg.cell}{model_cfg.layers}x{model_cfg.hidden}-drop{model_cfg.dropout:g}"
    given = shlex.join(f"--{k.replace('_', '-')}={v}" for k, v in options.items() if v is not None)
    line = json.dumps(result(run, given, name, threads, time.time() - started, load))
    print(line, flush=True)
    if append:
        with open(append, "a", encoding="utf-8") as f:
            f.write(line + "\n")


COMMAND = Command("torch_train.py", params=[*train_command.params, *OWN], callback=main,
                  context_settings={"help_option_names": ["-h", "--help"], **ENV},
                  help=__doc__.split("\n\n")[0])


if __name__ == "__main__":
    COMMAND(args=[a for a in sys.argv[1:] if a != "--"])  # train's options may follow a `--`
