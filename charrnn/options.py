"""The command line's shared options and parameter types: declared once, with one help text each,
for every command that takes them (as simonw/llm does)."""
import logging
import math
import os
import sys
import tempfile
import warnings
from dataclasses import fields
from pathlib import Path

import click

from charrnn.backend import BACKENDS, DEFAULT_BACKEND, write_atomically
from charrnn.cells import CELLS
from charrnn.configs import LONG_BUDGET, LONG_NETWORK, PRESETS, TrainConfig
from charrnn.devices import COORDINATOR_TIMEOUT, DeviceError, check_address
from charrnn.model import ModelConfig
from charrnn.optim import OPTIMIZERS
from charrnn.precision import PRECISIONS
from charrnn.schedule import SCHEDULES

POSITIVE = click.IntRange(min=1)
# Every option can come from the environment as CHARRNN_<OPTION> (CHARRNN_LR=0.001, CHARRNN_BACKEND=numba).
ENV = {"auto_envvar_prefix": "CHARRNN"}

RUN_DIR = Path("checkpoints")  # train's --out when not given, and where the other commands look for a checkpoint


def default_checkpoint(ctx, param, path):
    """The checkpoint given, else RUN_DIR's best.npz if it exists, else its latest.npz."""
    if path:
        return path
    return RUN_DIR / "best.npz" if (RUN_DIR / "best.npz").exists() else RUN_DIR / "latest.npz"


CHECKPOINT = click.option("--checkpoint", "checkpoint_path", type=click.Path(dir_okay=False),
                          envvar="CHARRNN_CHECKPOINT", callback=default_checkpoint,
                          help="Checkpoint to use. [default: checkpoints/best.npz if it exists, "
                               "else checkpoints/latest.npz]")

# No default here, so `train --resume` can tell an option given again from one left to the checkpoint.
BACKEND = click.option("--backend", type=click.Choice(list(BACKENDS)),
                       help=f"PyTensor backend: jax (uses a GPU when JAX sees one), c or numba; a checkpoint "
                            f"computes the same on each. [default: {DEFAULT_BACKEND}]")

# No default here either: on --resume, the checkpoint's precision stands unless given again; eval's
# is float32, so that its scores compare across machines unless asked otherwise.
PRECISION = click.option("--precision", type=click.Choice(list(PRECISIONS)),
                         help="Matrix products in float32, or with bfloat16 inputs accumulated in float32: faster "
                              "where the hardware multiplies bfloat16 (GPUs from Ampere on; CPUs with AVX-512 BF16 "
                              "or AMX), with the jax backend only (the others compute them in float32); auto is "
                              "bfloat16 there and float32 elsewhere. Weights, optimizer state, the loss and "
                              "checkpoints stay float32. [default: auto for train, float32 for eval]")


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
JSON = click.option("--json", "as_json", is_flag=True, envvar="CHARRNN_JSON",
                    help="Print one JSON object instead of text.")


def encoding(what):
    """--encoding, the text encoding of `what` (CORPUS, FILE, --seed-file)."""
    return click.option("--encoding", default="utf-8", show_default=True, help=f"Text encoding of {what}.")


class Output(click.Path):
    """A file to write, or - for stdout: refused before any work when its directory is missing or not writable."""

    def __init__(self):
        super().__init__(dir_okay=False, allow_dash=True)

    def convert(self, value, param, ctx):
        path = super().convert(value, param, ctx)
        if path != "-":
            try:
                tempfile.TemporaryFile(dir=Path(path).parent).close()
            except OSError as e:
                raise click.ClickException(f"cannot write {path}: {e.strerror or e}") from None
        return path


def write_output(output, data):
    """Write `data` to stdout (no OUTPUT, or -) or atomically to an Output: a reader never sees half of it."""
    if output in (None, "-"):
        try:
            click.echo(data, nl=False)
            sys.stdout.flush()
        except BrokenPipeError:  # `| head`: the reader has what it wanted
            sys.stdout = open(os.devnull, "w")
        return
    try:
        write_atomically(Path(output), lambda f: f.write(data.encode("utf-8")), public=True)
    except OSError as e:
        raise click.ClickException(f"cannot write {output}: {e.strerror or e}") from None


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


class LearningRate(click.ParamType):
    """--lr: a positive number, or auto (schedule.auto_lr)."""

    name = "float|auto"

    def convert(self, value, param, ctx):
        if value == "auto" or isinstance(value, float):
            return value
        try:
            rate = float(value)
        except ValueError:
            rate = math.nan
        if not (math.isfinite(rate) and rate > 0):
            self.fail(f"{value!r} is neither a positive number nor auto", param, ctx)
        return rate


class Devices(click.ParamType):
    """--devices: all, or a positive number of devices."""

    name = "all|N"

    def convert(self, value, param, ctx):
        if value == "all" or (isinstance(value, int) and value > 0):
            return value
        if str(value).strip().isdigit() and int(value) > 0:
            return int(value)
        self.fail(f"{value!r} is neither all nor a positive number of devices", param, ctx)


class Address(click.ParamType):
    """HOST:PORT, checked (and the host looked up) before any work."""

    name = "host:port"

    def convert(self, value, param, ctx):
        try:
            return check_address(str(value))
        except DeviceError as e:
            self.fail(str(e), param, ctx)


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
    click.option("--hidden", type=POSITIVE,
                 help="Units per layer. With neither --hidden nor --dropout, a GRU of 2 layers gets "
                      f"{LONG_NETWORK['hidden']} units and dropout {LONG_NETWORK['dropout']} for a budget of "
                      f"{LONG_BUDGET:g} epochs or more (for --max-time alone, the epochs estimated from the speed "
                      "of its first updates)." + _d(ModelConfig, "hidden")),
    click.option("--dropout", type=click.FloatRange(0, 1, max_open=True),
                 help="Dropout between layers and before the output, training only (see --hidden)."
                      + _d(ModelConfig, "dropout")),
    click.option("--seq-len", type=POSITIVE,
                 help="Characters per chunk (truncated BPTT length)." + _d(TrainConfig, "seq_len")),
    click.option("--batch-size", type=POSITIVE, help="Contiguous streams per update." + _d(TrainConfig, "batch_size")),
    click.option("--carry-state/--no-carry-state", default=None,
                 help="Carry the hidden state from chunk to chunk (reset each epoch), or reset it every chunk "
                 "as the lesson does. [default: carry]"),
    click.option("--optimizer", type=click.Choice(list(OPTIMIZERS)), help=_d(TrainConfig, "optimizer").strip()),
    click.option("--lr", type=LearningRate(),
                 help="Learning rate: the peak of the cosine schedule. auto: 3e-3 for a budget of up to 10 epochs, "
                      "2e-3 from 16 on, log-linear between (for --max-time alone, the epochs estimated from the "
                      "speed of the first updates); 2e-3 with the char-rnn schedule." + _d(TrainConfig, "lr")),
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
    click.option("--sample-length", type=click.IntRange(min=0),
                 help="Characters in each training-time sample; 0: checkpoints without samples."
                      + _d(TrainConfig, "sample_length")),
    click.option("--lr-schedule", type=click.Choice(list(SCHEDULES)),
                 help="char-rnn: multiply lr by --lr-decay after each epoch past --lr-decay-after. cosine: warm up "
                      "over --warmup updates, then fall along a half cosine to --lr-floor x lr by the end of the "
                      "budget (--max-steps, else --max-time, else --epochs)." + _d(TrainConfig, "lr_schedule")),
    click.option("--warmup", type=click.IntRange(min=0),
                 help="cosine: updates of linear warm-up; 0 disables." + _d(TrainConfig, "warmup")),
    click.option("--lr-floor", type=click.FloatRange(0, 1),
                 help="cosine: the learning rate at the end of the budget, as a fraction of lr."
                      + _d(TrainConfig, "lr_floor")),
    click.option("--unroll", type=POSITIVE,
                 help="Time steps per loop iteration of the compiled step, a divisor of --seq-len: the same "
                      "result at another speed (the first knob to try on a GPU)." + _d(TrainConfig, "unroll")),
]


# train's options for the run itself: where it starts from and where it writes.
RUN = [
    click.option("--preset", type=click.Choice(list(PRESETS)),
                 help="Start from a named configuration; options given explicitly still win. "
                      "lesson6 is the fast.ai notebook's network and training."),
    encoding("CORPUS"),
    click.option("--resume", type=click.Path(dir_okay=False),
                 help="Continue the run of this checkpoint exactly where it stopped (same corpus)."),
    click.option("--out", type=click.Path(file_okay=False),
                 help="Directory for latest.npz, best.npz, metrics.jsonl and samples.txt. "
                      "[default: checkpoints, or the --resume checkpoint's directory]"),
]

# train's options for where it runs: how many devices, and which processes train together. The
# process options (and --devices) also come from the environment as CHARRNN_COORDINATOR, ...; what
# is not given there JAX reads from its own: JAX_COORDINATOR_ADDRESS, or a cluster's (SLURM, Open MPI).
PLACEMENT = [
    click.option("--devices", type=Devices(),
                 help="Devices to train on, the --batch-size streams split evenly over them: all (every one JAX "
                      "sees, on every process) or a number. [default: 1, or all with several processes]"),
    click.option("--coordinator", type=Address(),
                 help="HOST:PORT of process 0, where several processes (hosts) meet to train together: "
                      "--coordinator 10.0.0.1:7777"),
    click.option("--num-processes", type=POSITIVE, help="How many processes train together."),
    click.option("--process-id", type=click.IntRange(min=0), help="This process's number, 0 to --num-processes - 1; "
                 "process 0 writes the run's files."),
    click.option("--coordinator-timeout", type=Duration(), default=f"{COORDINATOR_TIMEOUT}s", show_default=True,
                 help="Give up when the processes have not all met at the coordinator within this time."),
]

# predict's options for where the continuation starts and what is shown.
SEEDING = [
    click.option("--seed", help="Text to start from; - reads it from stdin (one final newline dropped)."),
    click.option("--seed-file", type=click.Path(exists=True, dir_okay=False, allow_dash=True),
                 help="Start from this file's whole text instead, final newline kept (- reads stdin): "
                      "--seed-file act1.txt"),
    encoding("--seed-file"),
    CHECKPOINT,
    click.option("--length", default=200, show_default=True, type=POSITIVE, help="Characters to generate."),
]
SHOWING = [
    click.option("--rng-seed", default=0, show_default=True, type=int, help="Seed for the random draws."),
    click.option("--next", "show_next", is_flag=True, envvar="CHARRNN_NEXT",
                 help="Instead of generating, show for each seed position the most likely next character."),
    click.option("--unknown", default="error", show_default=True, type=click.Choice(["error", "skip"]),
                 help="What to do with seed characters the checkpoint's vocabulary lacks."),
    click.option("--each-line", is_flag=True,
                 help="With --seed - or --seed-file: every input line is a seed, and each gets one output line: "
                      "its continuation up to --length characters or the first newline."),
]

# explain's options: what is read and what is written.
EXPLAINING = [
    click.option("--text", "given", help="Explain this text instead of a FILE."),
    CHECKPOINT,
    click.option("-o", "--output", type=Output(),
                 help="File to write (atomically); - is stdout. Needed for the page; tsv and json go to stdout "
                      "without it."),
    click.option("--format", "fmt", default="html", show_default=True, type=click.Choice(["html", "tsv", "json"]),
                 help="html: the page; tsv or json: one row (JSON object) per position."),
    click.option("--top-k", default=5, show_default=True, type=POSITIVE,
                 help="Alternatives per position in tsv and json."),
    click.option("--max-chars", default=20000, show_default=True, type=POSITIVE,
                 help="Explain at most this many characters; longer text is cut, with a notice."),
    encoding("FILE"),
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


run_options = _all(RUN)
training_options = _all(TRAINING)
placement_options = _all(PLACEMENT)
predict_options = _all(SEEDING + DECODING + SHOWING)
explain_options = _all(EXPLAINING)
