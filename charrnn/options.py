"""The command line's shared options and parameter types: declared once, with one help text each,
for every command that takes them (as simonw/llm does)."""
import logging
import math
import warnings
from dataclasses import fields

import click

from charrnn.backend import BACKENDS, DEFAULT_BACKEND
from charrnn.cells import CELLS
from charrnn.configs import TrainConfig
from charrnn.model import ModelConfig
from charrnn.optim import OPTIMIZERS

POSITIVE = click.IntRange(min=1)
POSITIVE_FLOAT = click.FloatRange(min=0, min_open=True)
# Every option can come from the environment as CHARRNN_<OPTION> (CHARRNN_LR=0.001, CHARRNN_BACKEND=numba).
ENV = {"auto_envvar_prefix": "CHARRNN"}

CHECKPOINT = click.option("--checkpoint", "checkpoint_path", type=click.Path(dir_okay=False),
                          envvar="CHARRNN_CHECKPOINT",
                          help="Checkpoint to use. [default: checkpoints/best.npz if it exists, "
                               "else checkpoints/latest.npz]")

# No default here, so `train --resume` can tell an option given again from one left to the checkpoint.
BACKEND = click.option("--backend", type=click.Choice(list(BACKENDS)),
                       help=f"PyTensor backend: jax (uses a GPU when JAX sees one), c or numba; a checkpoint "
                            f"computes the same on each. [default: {DEFAULT_BACKEND}]")


def _silence(ctx, param, quiet):
    """-q: library warnings and log records (JAX's, PyTensor's) stay off stderr too, until the command ends."""
    if quiet:
        ctx.with_resource(warnings.catch_warnings())
        warnings.simplefilter("ignore")
        logging.disable(logging.WARNING)
        ctx.call_on_close(lambda: logging.disable(logging.NOTSET))
    return quiet


QUIET = click.option("-q", "--quiet", is_flag=True, callback=_silence,
                     help="Nothing on stderr but errors (no progress bars, log lines or warnings); "
                          "data still goes to stdout.")


class Duration(click.ParamType):
    """A time budget: seconds, or a number with s, m or h (90s, 20m, 2h)."""

    name = "duration"
    UNITS = {"s": 1, "m": 60, "h": 3600}

    def convert(self, value, param, ctx):
        if isinstance(value, (int, float)):
            return float(value)
        text = str(value).strip().lower()
        scale = self.UNITS.get(text[-1:], None)
        try:
            seconds = float(text[:-1] if scale else text) * (scale or 1)
        except ValueError:
            seconds = math.nan
        if not math.isfinite(seconds):
            self.fail(f"{value!r} is not a duration like 90s, 20m or 2h", param, ctx)
        if seconds <= 0:
            self.fail(f"{value!r} must be positive", param, ctx)
        return seconds


def _d(cls, name):
    """The dataclass default of a config field, for help texts: ' [default: VALUE]'."""
    return f" [default: {({f.name: f.default for f in fields(cls)}[name])}]"


# `train`'s options for the ModelConfig and TrainConfig fields, in --help's order. None means "not
# given": the preset's or the checkpoint's value stands.
TRAINING = [
    click.option("--cell", type=click.Choice(list(CELLS)), help="Recurrent cell." + _d(ModelConfig, "cell")),
    click.option("--activation", type=click.Choice(["relu", "tanh"]),
                 help="Activation of the rnn cell." + _d(ModelConfig, "activation")),
    click.option("--layers", type=POSITIVE, help="Stacked recurrent layers." + _d(ModelConfig, "layers")),
    click.option("--hidden", type=POSITIVE, help="Units per layer." + _d(ModelConfig, "hidden")),
    click.option("--dropout", type=click.FloatRange(0, 1, max_open=True),
                 help="Dropout between layers and before the output, training only." + _d(ModelConfig, "dropout")),
    click.option("--seq-len", type=POSITIVE,
                 help="Characters per chunk (truncated BPTT length)." + _d(TrainConfig, "seq_len")),
    click.option("--batch-size", type=POSITIVE, help="Contiguous streams per update." + _d(TrainConfig, "batch_size")),
    click.option("--carry-state/--no-carry-state", default=None,
                 help="Carry the hidden state from chunk to chunk (reset each epoch), or reset it every chunk "
                 "as the lesson does. [default: carry]"),
    click.option("--optimizer", type=click.Choice(list(OPTIMIZERS)), help=_d(TrainConfig, "optimizer").strip()),
    click.option("--lr", type=POSITIVE_FLOAT, help="Learning rate." + _d(TrainConfig, "lr")),
    click.option("--loss", type=click.Choice(["mean", "sum"]),
                 help="The update's loss: mean per character, or summed over the chunk as in the lesson."
                      + _d(TrainConfig, "loss")),
    click.option("--clip", type=click.FloatRange(min=0),
                 help="Clip gradients to this global norm; 0 disables." + _d(TrainConfig, "clip")),
    click.option("--lr-decay", type=click.FloatRange(0, 1, min_open=True),
                 help="Multiply lr by this after each epoch past --lr-decay-after." + _d(TrainConfig, "lr_decay")),
    click.option("--lr-decay-after", type=click.IntRange(min=0),
                 help="Epochs before lr decay starts." + _d(TrainConfig, "lr_decay_after")),
    click.option("--val-frac", type=click.FloatRange(0, 1, max_open=True),
                 help="Tail of the corpus held out for validation; 0 disables." + _d(TrainConfig, "val_frac")),
    click.option("--eval-every", type=POSITIVE,
                 help="Updates between validation passes." + _d(TrainConfig, "eval_every")),
    click.option("--epochs", type=POSITIVE, help="Passes over the training part." + _d(TrainConfig, "epochs")),
    click.option("--max-steps", type=POSITIVE, help="Stop after this many updates."),
    click.option("--max-time", type=Duration(), help="Stop after this much training time: 90s, 20m, 2h."),
    click.option("--patience", type=POSITIVE,
                 help="Stop when validation loss has not improved for this many evaluations."),
    click.option("--rng-seed", type=int, help="Seed for weights, dropout and samples." + _d(TrainConfig, "rng_seed")),
    click.option("--checkpoint-every", type=POSITIVE,
                 help="Updates between checkpoints (a sample is written with each)."
                      + _d(TrainConfig, "checkpoint_every")),
    click.option("--log-every", type=POSITIVE,
                 help="Updates between metrics.jsonl entries." + _d(TrainConfig, "log_every")),
    click.option("--sample-length", type=POSITIVE,
                 help="Characters in each training-time sample." + _d(TrainConfig, "sample_length")),
    click.option("--unroll", type=POSITIVE,
                 help="Time steps per loop iteration of the compiled step, a divisor of --seq-len: the same "
                      "result at another speed (the first knob to try on a GPU)." + _d(TrainConfig, "unroll")),
]


# predict's options for a Decoding (charrnn/decode.py): how the continuation is chosen.
DECODING = [
    click.option("--temperature", type=click.FloatRange(min=0),
                 help="Sampling temperature; 0 takes the most likely character at each step. [default: 1]"),
    click.option("--top-k", type=POSITIVE,
                 help="Draw only among the K most likely characters: --top-k 10  [default: all]"),
    click.option("--top-p", type=click.FloatRange(0, 1, min_open=True),
                 help="Draw from the smallest set of most likely characters whose probability reaches P: "
                      "--top-p 0.9  [default: 1, all]"),
    click.option("--beam", type=POSITIVE,
                 help="Beam search of this width for the most likely continuation, instead of sampling (not with "
                      "--temperature > 0, --top-k or --top-p): --beam 4"),
    click.option("--length-penalty", type=click.FloatRange(min=0),
                 help="With --beam and --stop: divide scores by ((5 + n) / 6) ** ALPHA: --length-penalty 0.6  "
                      "[default: 0]"),
    click.option("--stop", "stops", multiple=True,
                 help="Stop once the continuation ends with this text (repeatable; the text is kept): "
                      "--stop $'\\n\\n'"),
    click.option("--stop-drop", is_flag=True, help="Leave the --stop text out of the output: --stop END --stop-drop"),
]


def _all(options):
    """A decorator applying a list of click options, in the list's order on --help."""
    def apply(command):
        for option in reversed(options):
            command = option(command)
        return command

    return apply


training_options = _all(TRAINING)
decoding_options = _all(DECODING)
