"""Configurations: the training configuration, the named presets, and what a checkpoint's
configuration means (version-1 defaults, what older checkpoints trained with, what may change on
--resume and what it requires, the sampler's context).

`eval`, `info`, `predict`, `explain` and `--resume` all read a checkpoint's configuration here.
"""
from dataclasses import dataclass, fields, replace

from charrnn.backend import DEFAULT_BACKEND
from charrnn.cells import CELLS
from charrnn.corpus import Vocab, fingerprint
from charrnn.model import ModelConfig, unroll_for


@dataclass(frozen=True)
class TrainConfig:
    seq_len: int = 64  # characters per chunk: the truncated-BPTT length (lesson 6: 8)
    batch_size: int = 64  # contiguous streams read side by side (lesson 6: 1)
    carry_state: bool = True  # carry the hidden state from chunk to chunk within an epoch (lesson 6: reset)
    optimizer: str = "adam"  # sgd, momentum, rmsprop or adam (lesson 6: sgd)
    # learning rate, the peak of the cosine schedule; auto: chosen for the budget (schedule.auto_lr) (lesson 6: 0.01)
    lr: float | str = "auto"
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
    # the training step's matrix products: float32, bfloat16 inputs accumulated in float32 (precision.py), or
    # auto: bfloat16 where the hardware multiplies it natively, else float32 (chosen by benchmarks/sweep.py);
    # weights, optimizer state, the loss and checkpoints are float32 either way. Older checkpoints: float32
    precision: str = "auto"
    # char-rnn (lr_decay after lr_decay_after epochs) or cosine (warm-up, then down to lr_floor by the budget's end)
    lr_schedule: str = "cosine"  # chosen by benchmarks/sweep.py --stage schedules (benchmarks/README.md)
    warmup: int = 100  # cosine: updates of linear warm-up from lr / warmup to lr
    lr_floor: float = 0.1  # cosine: the learning rate at the end of the budget, as a fraction of lr
    unroll: int = 1  # time steps per scan iteration, a divisor of seq_len: the same result at another speed
    devices: int = 1  # data-parallel devices over all processes (devices.py); the streams split evenly


PRESETS = {
    # The fast.ai lesson-6 notebook: relu RNN, 256 units, 8-character sequences from a zero state,
    # one plain SGD update per sequence on the summed loss, no clipping, no validation split, float32.
    # Version-1 checkpoints (the lesson-6 network) hold only part of it: the rest is read from here.
    "lesson6": {
        "cell": "rnn", "hidden": 256, "layers": 1, "activation": "relu", "dropout": 0.0,
        "seq_len": 8, "batch_size": 1, "carry_state": False, "optimizer": "sgd", "lr": 0.01, "loss": "sum",
        "clip": 0.0, "lr_decay": 1.0, "lr_schedule": "char-rnn", "val_frac": 0.0, "epochs": 1, "log_every": 1000,
        "checkpoint_every": 10000, "precision": "float32",
    },
}

# The default network for a long budget: GRU 2x384 with dropout 0.3 learns more than the default's
# 2x256 with dropout 0.1 from LONG_BUDGET epochs on (README.md, "The default configuration"). train
# chooses it when the run's network is the default's: no --hidden, --dropout or --preset, and the
# default cell and layers. The budget's epochs are those of schedule.Budget.measure: of the default
# network's speed for --max-time alone.
LONG_NETWORK, LONG_BUDGET = {"hidden": 384, "dropout": 0.3}, 20.0

# What a checkpoint written before an option existed trained with: it keeps that, whatever the default becomes.
BEFORE = {"lr_schedule": "char-rnn", "precision": "float32"}

# Options that may differ from the checkpoint's when resuming; every other one is fixed by the run.
# backend and precision only change how fast the same update is computed (precision: within bfloat16's rounding).
RESUMABLE = ("lr", "lr_decay", "lr_decay_after", "epochs", "max_steps", "max_time", "patience", "eval_every",
             "log_every", "checkpoint_every", "sample_length", "backend", "precision", "lr_schedule", "warmup",
             "lr_floor", "unroll", "devices")


class ConfigError(ValueError):
    """A configuration that cannot be used; the message says why."""


class OptionError(ConfigError):
    """Options given on the command line that cannot be used as given."""


class OptionClash(OptionError):
    """Options given on the command line that the checkpoint's run fixes."""


def _split(values):
    """(ModelConfig fields, TrainConfig fields) of a flat dict; names neither knows are dropped."""
    model_keys, train_keys = {f.name for f in fields(ModelConfig)}, {f.name for f in fields(TrainConfig)}
    return ({k: v for k, v in values.items() if k in model_keys},
            {k: v for k, v in values.items() if k in train_keys})


def build_configs(vocab_size, preset=None, **options):
    """ModelConfig and TrainConfig from the defaults, then the preset, then explicit options (not None)."""
    given = {k: v for k, v in options.items() if v is not None}
    model_values, train_values = _split({**PRESETS.get(preset, {}), **given})
    return replace(ModelConfig(vocab_size), **model_values), _checked(replace(TrainConfig(), **train_values))


def long_network(model_cfg, preset=None, **options):
    """The network to train instead of `model_cfg` for a budget of LONG_BUDGET epochs or more
    (LONG_NETWORK), or None when the run chose its own: --hidden, --dropout or a preset given, or a
    cell or depth other than the default's."""
    default = ModelConfig(model_cfg.vocab_size)
    if preset or options.get("hidden") is not None or options.get("dropout") is not None:
        return None
    if (model_cfg.cell, model_cfg.layers) != (default.cell, default.layers):
        return None
    return replace(model_cfg, **LONG_NETWORK)


def _checked(train_cfg):
    """`train_cfg`, or OptionError when its options cannot go together."""
    if train_cfg.seq_len % train_cfg.unroll:
        divisors = ", ".join(str(u) for u in range(1, train_cfg.seq_len + 1) if train_cfg.seq_len % u == 0)
        raise OptionError(f"--unroll {train_cfg.unroll} does not divide --seq-len {train_cfg.seq_len}; "
                          f"choose one of {divisors}")
    return train_cfg


def unroll_steps(train_cfg, steps=None):
    """Time steps per scan iteration for `steps` time steps (default: seq_len, which --unroll
    divides; a validation part too short for whole chunks has fewer): --unroll, or the largest
    divisor of `steps` below it. Any choice computes the same."""
    return unroll_for(steps or train_cfg.seq_len, train_cfg.unroll)


def _defaults(meta):
    """What a checkpoint leaves out: nothing for version 2; for version 1 (the lesson-6 network,
    which held only vocab_size and hidden and part of the training) the lesson6 preset's values."""
    return _split(PRESETS["lesson6"] if meta.get("version") == 1 else {})


def model_config(meta):
    """The ModelConfig a checkpoint's metadata describes; ValueError when model and vocabulary disagree."""
    config = ModelConfig(**{**_defaults(meta)[0], **meta["model"]})
    if config.vocab_size != len(meta["vocab"]) or config.cell not in CELLS:
        raise ValueError("model and vocabulary disagree")
    return config


def train_config(meta):
    """The TrainConfig a checkpoint's metadata describes."""
    return TrainConfig(**{**_defaults(meta)[1], **BEFORE, **_split(meta.get("train", {}))[1]})


def checkpoint_configs(meta):
    """(ModelConfig, TrainConfig) of a checkpoint's metadata."""
    return model_config(meta), train_config(meta)


def resume_configs(meta, options, preset=None):
    """The checkpoint's configurations, with the options given again (not None) that may change on
    resume applied; OptionClash names any other option given with a different value, or a preset."""
    if preset:
        raise OptionClash("--preset cannot be combined with --resume: the run's configuration comes from the "
                          "checkpoint")
    if "resume" not in meta:
        raise ConfigError("this checkpoint holds no training state to resume from (written by an older charrnn)")
    model_cfg, train_cfg = checkpoint_configs(meta)
    fixed = {**meta["model"], **meta["train"]}
    given = {k: v for k, v in options.items() if v is not None}
    clash = [k for k, v in given.items() if k not in RESUMABLE and fixed.get(k) != v]
    if clash:
        names = ", ".join("--" + k.replace("_", "-") for k in clash)
        allowed = ", ".join("--" + k.replace("_", "-") for k in RESUMABLE)
        raise OptionClash(f"{names} cannot change on --resume (the checkpoint has "
                          f"{', '.join(f'{k}={fixed.get(k)}' for k in clash)}); options that may change: {allowed}")
    return model_cfg, _checked(replace(train_cfg, **{k: v for k, v in given.items() if k in RESUMABLE}))


def resume_ids(meta, corpus_vocab, ids):
    """The --resume checkpoint's vocabulary and the corpus's `ids` (in `corpus_vocab`) as ids in it;
    ConfigError when the corpus has characters the checkpoint's vocabulary lacks."""
    vocab = Vocab.from_json(meta["vocab"])
    try:
        return vocab, vocab.translate(ids, corpus_vocab)
    except KeyError as e:
        lacks = " ".join(repr(c) for c in e.args[0][:20])
        raise ConfigError(f"cannot resume on this corpus: the checkpoint's vocabulary lacks {lacks}; --resume "
                          "continues on the same corpus") from None


def check_resume_corpus(meta, train_ids, path):
    """ConfigError unless `train_ids` are the training part the checkpoint at `path` was trained on."""
    if meta["resume"]["corpus"] != fingerprint(train_ids):
        raise ConfigError(f"this is not the corpus {path} was trained on; --resume continues on the same corpus")


def sampler_context(train_cfg):
    """What the sampler reads before each character: None for a network trained with its state
    carried (the whole text, state carried), else the last seq_len characters from a zero state."""
    return None if train_cfg.carry_state else train_cfg.seq_len
