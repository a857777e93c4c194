"""The `charrnn` command: options in, configs built, library called, results echoed.

The only module that talks to the terminal. Data goes to stdout; progress, logs and errors to stderr.
"""
import sys
from dataclasses import fields
from functools import partial
from pathlib import Path

import click
from tqdm import tqdm

from charrnn import __version__, checkpoint
from charrnn.backend import BACKENDS, DEFAULT_BACKEND
from charrnn.corpus import CorpusError, Vocab, read_text, split
from charrnn.model import GATES, ModelConfig, shared_params
from charrnn.optim import OPTIMIZERS
from charrnn.presets import PRESETS, build_configs
from charrnn.sample import Sampler
from charrnn.train import Trainer, TrainConfig, TrainingDiverged, TrainingInterrupted

DEFAULT_RUN = Path("checkpoints")
POSITIVE = click.IntRange(min=1)
POSITIVE_FLOAT = click.FloatRange(min=0, min_open=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="charrnn")
def cli():
    """Train character-level recurrent networks on your own text, and predict with them.

    \b
    Example:
      charrnn train corpus.txt
      charrnn predict --seed "First Cit"
    """


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
            self.fail(f"{value!r} is not a duration like 90s, 20m or 2h", param, ctx)
        if seconds <= 0:
            self.fail(f"{value!r} must be positive", param, ctx)
        return seconds


def _d(cls, name):
    """The dataclass default of a config field, for help texts."""
    return {f.name: f.default for f in fields(cls)}[name]


@cli.command()
@click.argument("corpus", type=click.Path(exists=True, dir_okay=False, allow_dash=True))
@click.option("--preset", type=click.Choice(list(PRESETS)),
              help="Start from a named configuration; options given explicitly still win. "
                   "lesson6 is the fast.ai notebook's network and training.")
@click.option("--encoding", default="utf-8", show_default=True, help="Text encoding of CORPUS.")
@click.option("--cell", type=click.Choice(list(GATES)), help=f"Recurrent cell. [default: {_d(ModelConfig, 'cell')}]")
@click.option("--activation", type=click.Choice(["relu", "tanh"]),
              help=f"Activation of the rnn cell. [default: {_d(ModelConfig, 'activation')}]")
@click.option("--layers", type=POSITIVE, help=f"Stacked recurrent layers. [default: {_d(ModelConfig, 'layers')}]")
@click.option("--hidden", type=POSITIVE, help=f"Units per layer. [default: {_d(ModelConfig, 'hidden')}]")
@click.option("--dropout", type=click.FloatRange(0, 1, max_open=True),
              help=f"Dropout between layers and before the output, training only. [default: {_d(ModelConfig, 'dropout')}]")
@click.option("--seq-len", type=POSITIVE, help=f"Characters per chunk (truncated BPTT length). [default: {_d(TrainConfig, 'seq_len')}]")
@click.option("--batch-size", type=POSITIVE, help=f"Contiguous streams per update. [default: {_d(TrainConfig, 'batch_size')}]")
@click.option("--carry-state/--no-carry-state", default=None,
              help="Carry the hidden state from chunk to chunk (reset each epoch), or reset it every chunk "
                   "as the lesson does. [default: carry]")
@click.option("--optimizer", type=click.Choice(list(OPTIMIZERS)), help=f"[default: {_d(TrainConfig, 'optimizer')}]")
@click.option("--lr", type=POSITIVE_FLOAT, help=f"Learning rate. [default: {_d(TrainConfig, 'lr')}]")
@click.option("--loss", type=click.Choice(["mean", "sum"]),
              help="The update's loss: mean per character, or summed over the chunk as in the lesson. [default: mean]")
@click.option("--clip", type=click.FloatRange(min=0), help=f"Clip gradients to this global norm; 0 disables. [default: {_d(TrainConfig, 'clip')}]")
@click.option("--lr-decay", type=click.FloatRange(0, 1, min_open=True),
              help=f"Multiply lr by this after each epoch past --lr-decay-after. [default: {_d(TrainConfig, 'lr_decay')}]")
@click.option("--lr-decay-after", type=click.IntRange(min=0), help=f"Epochs before lr decay starts. [default: {_d(TrainConfig, 'lr_decay_after')}]")
@click.option("--val-frac", type=click.FloatRange(0, 1, max_open=True),
              help=f"Tail of the corpus held out for validation; 0 disables. [default: {_d(TrainConfig, 'val_frac')}]")
@click.option("--eval-every", type=POSITIVE, help=f"Updates between validation passes. [default: {_d(TrainConfig, 'eval_every')}]")
@click.option("--epochs", type=POSITIVE, help=f"Passes over the training part. [default: {_d(TrainConfig, 'epochs')}]")
@click.option("--max-steps", type=POSITIVE, help="Stop after this many updates.")
@click.option("--max-time", type=Duration(), help="Stop after this much training time: 90s, 20m, 2h.")
@click.option("--out", default="checkpoints", show_default=True, type=click.Path(file_okay=False),
              help="Directory for latest.npz, best.npz, metrics.jsonl and samples.txt.")
@click.option("--rng-seed", type=int, help="Seed for weights, dropout and samples. [default: 0]")
@click.option("--checkpoint-every", type=POSITIVE,
              help=f"Updates between checkpoints (a sample is written with each). [default: {_d(TrainConfig, 'checkpoint_every')}]")
@click.option("--log-every", type=POSITIVE, help=f"Updates between metrics.jsonl entries. [default: {_d(TrainConfig, 'log_every')}]")
@click.option("--sample-length", type=POSITIVE, help="Characters in each training-time sample. [default: 200]")
@click.option("--backend", type=click.Choice(list(BACKENDS)), help=f"PyTensor backend. [default: {DEFAULT_BACKEND}]")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar or log lines.")
def train(corpus, encoding, preset, out, quiet, **options):
    """Train a network on CORPUS (a text file, or - for stdin).

    Writes OUT/latest.npz, OUT/best.npz (lowest validation loss), OUT/metrics.jsonl and
    OUT/samples.txt.

    \b
    Example:
      charrnn train corpus.txt --max-time 20m
      charrnn train corpus.txt --preset lesson6 --out lesson6
      cat corpus.txt | charrnn train - --cell gru --layers 2 --max-steps 5000
    """
    log = (lambda msg: None) if quiet else partial(tqdm.write, file=sys.stderr)
    try:
        text = read_text(corpus, encoding)
    except CorpusError as e:
        raise click.ClickException(str(e)) from None
    vocab = Vocab.from_text(text)
    model_cfg, train_cfg = build_configs(len(vocab), preset, **options)
    train_ids, val_ids = split(vocab.encode(text), train_cfg.val_frac)
    _check_sizes(len(train_ids), len(val_ids), train_cfg)
    out_dir = _make_out_dir(out)
    log(f"corpus: {len(train_ids) + len(val_ids):,} characters ({len(val_ids):,} for validation), "
        f"vocabulary of {len(vocab)}")
    trainer = Trainer(vocab, model_cfg, train_cfg, out_dir, log=log, progress=True if quiet else None)
    trainer.compile()
    try:
        path = trainer.run(train_ids, val_ids)
    except TrainingDiverged as e:
        raise click.ClickException(f"{e} (the last checkpoint in {out_dir} is kept)") from None
    except TrainingInterrupted as e:
        click.echo(f"charrnn: {e} after {trainer.step} updates; checkpoint {e.path}", err=True)
        sys.exit(128 + e.signum)
    best = f", best validation loss {trainer.best_val_loss:.4f}" if trainer.val_loss is not None else ""
    log(f"done: {trainer.step} updates, loss {trainer.last_loss:.4f} nats/char{best}; checkpoint {path}")


def _check_sizes(n_train, n_val, cfg):
    if n_train < cfg.batch_size * cfg.seq_len + 1:
        hint = "--batch-size" if cfg.batch_size > 1 else "--seq-len"
        raise click.BadParameter(
            f"the training part has {n_train} characters; --batch-size {cfg.batch_size} x --seq-len "
            f"{cfg.seq_len} needs at least {cfg.batch_size * cfg.seq_len + 1}", param_hint=f"'{hint}'")
    if cfg.val_frac > 0 and n_val < 2:
        raise click.BadParameter(f"leaves {n_val} characters for validation; raise it or pass 0",
                                 param_hint="'--val-frac'")


def _make_out_dir(out):
    try:
        Path(out).mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise click.ClickException(f"cannot create output directory {out}: {e.strerror or e}") from None
    return Path(out)


@cli.command()
@click.option("--seed", required=True, help="Text to start from; - reads it from stdin (one final newline dropped).")
@click.option("--checkpoint", "checkpoint_path", type=click.Path(dir_okay=False),
              help="Checkpoint to load. [default: checkpoints/best.npz if it exists, else checkpoints/latest.npz]")
@click.option("--length", default=200, show_default=True, type=POSITIVE, help="Characters to generate.")
@click.option("--temperature", default=1.0, show_default=True, type=click.FloatRange(min=0),
              help="Sampling temperature; 0 takes the most likely character at each step.")
@click.option("--rng-seed", default=0, show_default=True, type=int, help="Seed for the random draws.")
@click.option("--next", "show_next", is_flag=True,
              help="Instead of generating, show for each seed position the most likely next character.")
@click.option("--unknown", default="error", show_default=True, type=click.Choice(["error", "skip"]),
              help="What to do with seed characters the checkpoint's vocabulary lacks.")
@click.option("--backend", default=DEFAULT_BACKEND, show_default=True, type=click.Choice(list(BACKENDS)),
              help="PyTensor backend that compiles the network.")
def predict(seed, checkpoint_path, length, temperature, rng_seed, show_next, unknown, backend):
    """Continue the --seed text with a trained network; the continuation goes to stdout.

    \b
    Example:
      charrnn predict --seed "First Cit" --length 300 --temperature 0.8
      echo "First Cit" | charrnn predict --seed - --next
    """
    if seed == "-":
        seed = sys.stdin.read().removesuffix("\n")
    params, meta = _load(checkpoint_path)
    vocab = Vocab.from_json(meta["vocab"])
    seed_ids = _encode_seed(vocab, seed, unknown)
    context = None if meta["train"].get("carry_state") else meta["train"]["seq_len"]
    sampler = Sampler(shared_params(params), checkpoint.model_config(meta), context, backend)
    if show_next:
        best, probs = sampler.next_chars(seed_ids)
        click.echo(format_next(vocab.decode(seed_ids), vocab.decode(best), probs))
        return
    text = vocab.decode(sampler.generate(seed_ids, length, temperature, rng_seed))
    click.echo(text, nl=sys.stdout.isatty())


def _load(path):
    """A checkpoint's (params, meta); by default the run directory's best.npz, else its latest.npz."""
    if path is None:
        best = DEFAULT_RUN / "best.npz"
        path = best if best.exists() else DEFAULT_RUN / "latest.npz"
    try:
        return checkpoint.load(path)
    except checkpoint.CheckpointError as e:
        hint = "; train one with `charrnn train CORPUS` or pass --checkpoint" if "no checkpoint" in str(e) else ""
        raise click.ClickException(f"{e}{hint}") from None


def _encode_seed(vocab, seed, unknown):
    missing = vocab.missing(seed)
    if missing and unknown == "skip":
        seed = "".join(c for c in seed if c not in set(missing))
    elif missing:
        shown = " ".join(repr(c) for c in missing)
        raise click.BadParameter(f"characters not in the checkpoint's vocabulary: {shown} "
                                 f"(--unknown skip drops them)", param_hint="'--seed'")
    if not seed:
        raise click.BadParameter("the seed is empty; give at least one character", param_hint="'--seed'")
    return vocab.encode(seed)


def format_next(seed, best, probs, width=16):
    """The notebook's view: each seed character, under it the predicted next one and its probability."""
    def cell(c):
        return {"\n": "\\n", "\t": "\\t", " ": "␣", "\r": "\\r"}.get(c, c).ljust(5)

    blocks = []
    for start in range(0, len(seed), width):
        span = range(start, min(start + width, len(seed)))
        blocks.append("\n".join([
            "input " + "".join(cell(seed[i]) for i in span),
            "next  " + "".join(cell(best[i]) for i in span),
            "prob  " + "".join(f"{probs[i]:<5.2f}" for i in span),
        ]))
    blocks = ["\n".join(line.rstrip() for line in block.splitlines()) for block in blocks]
    return "\n\n".join(blocks)
