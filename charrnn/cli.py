"""The `charrnn` command: options in, configs built, library called, results echoed.

The only module that talks to the terminal. Data goes to stdout; progress, logs and errors to stderr.
"""
import sys
from functools import partial
from pathlib import Path

import click
from tqdm import tqdm

from charrnn import __version__, checkpoint
from charrnn.backend import BACKENDS, DEFAULT_BACKEND
from charrnn.corpus import CorpusError, Vocab, read_text
from charrnn.model import ModelConfig, shared_params
from charrnn.sample import Sampler
from charrnn.train import Trainer, TrainConfig, TrainingDiverged, TrainingInterrupted

DEFAULT_CHECKPOINT = Path("checkpoints") / "latest.npz"
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


@cli.command()
@click.argument("corpus", type=click.Path(exists=True, dir_okay=False, allow_dash=True))
@click.option("--encoding", default="utf-8", show_default=True, help="Text encoding of CORPUS.")
@click.option("--hidden", default=256, show_default=True, type=POSITIVE, help="Hidden units.")
@click.option("--seq-len", default=8, show_default=True, type=POSITIVE, help="Characters per training sequence.")
@click.option("--lr", default=0.01, show_default=True, type=POSITIVE_FLOAT, help="SGD learning rate.")
@click.option("--epochs", default=1, show_default=True, type=POSITIVE, help="Passes over the corpus.")
@click.option("--max-steps", type=POSITIVE, help="Stop after this many updates (one per sequence).")
@click.option("--out", default="checkpoints", show_default=True, type=click.Path(file_okay=False),
              help="Directory for latest.npz, metrics.jsonl and samples.txt.")
@click.option("--rng-seed", default=0, show_default=True, type=int, help="Seed for weights and samples.")
@click.option("--checkpoint-every", default=10000, show_default=True, type=POSITIVE,
              help="Updates between checkpoints (a sample is written with each).")
@click.option("--log-every", default=1000, show_default=True, type=POSITIVE,
              help="Updates between metrics.jsonl entries.")
@click.option("--sample-length", default=200, show_default=True, type=POSITIVE,
              help="Characters in each training-time sample.")
@click.option("--backend", default=DEFAULT_BACKEND, show_default=True, type=click.Choice(list(BACKENDS)),
              help="PyTensor backend that compiles the network.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar or log lines.")
def train(corpus, encoding, hidden, seq_len, lr, epochs, max_steps, out, rng_seed, checkpoint_every,
          log_every, sample_length, backend, quiet):
    """Train the lesson-6 network on CORPUS (a text file, or - for stdin).

    Writes OUT/latest.npz, OUT/metrics.jsonl and OUT/samples.txt.

    \b
    Example:
      charrnn train corpus.txt --epochs 2 --out run1
      cat corpus.txt | charrnn train - --max-steps 5000
    """
    log = (lambda msg: None) if quiet else partial(tqdm.write, file=sys.stderr)
    try:
        text = read_text(corpus, encoding)
    except CorpusError as e:
        raise click.ClickException(str(e)) from None
    vocab = Vocab.from_text(text)
    ids = vocab.encode(text)
    if len(ids) < seq_len + 1:
        raise click.BadParameter(f"the corpus has {len(ids)} characters; --seq-len {seq_len} needs at least "
                                 f"{seq_len + 1}", param_hint="'--seq-len'")
    out_dir = _make_out_dir(out)
    log(f"corpus: {len(ids):,} characters, vocabulary of {len(vocab)}")
    model_cfg = ModelConfig(vocab_size=len(vocab), hidden=hidden)
    train_cfg = TrainConfig(seq_len=seq_len, lr=lr, epochs=epochs, max_steps=max_steps, log_every=log_every,
                            checkpoint_every=checkpoint_every, sample_length=sample_length, rng_seed=rng_seed,
                            backend=backend)
    trainer = Trainer(vocab, model_cfg, train_cfg, out_dir, log=log, progress=True if quiet else None)
    trainer.compile()
    try:
        path = trainer.run(ids)
    except TrainingDiverged as e:
        raise click.ClickException(f"{e} (the last checkpoint in {out_dir} is kept)") from None
    except TrainingInterrupted as e:
        click.echo(f"charrnn: {e} after {trainer.step} updates; checkpoint {e.path}", err=True)
        sys.exit(128 + e.signum)
    log(f"done: {trainer.step} updates, loss {trainer.last_loss:.4f} nats/char; checkpoint {path}")


def _make_out_dir(out):
    try:
        Path(out).mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise click.ClickException(f"cannot create output directory {out}: {e.strerror or e}") from None
    return Path(out)


@cli.command()
@click.option("--seed", required=True, help="Text to start from; - reads it from stdin (one final newline dropped).")
@click.option("--checkpoint", "checkpoint_path", default=str(DEFAULT_CHECKPOINT), show_default=True,
              type=click.Path(dir_okay=False), help="Checkpoint to load.")
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
    try:
        params, meta = checkpoint.load(checkpoint_path)
    except checkpoint.CheckpointError as e:
        hint = "; train one with `charrnn train CORPUS` or pass --checkpoint" if "no checkpoint" in str(e) else ""
        raise click.ClickException(f"{e}{hint}") from None
    vocab = Vocab.from_json(meta["vocab"])
    seed_ids = _encode_seed(vocab, seed, unknown)
    sampler = Sampler(shared_params(params), meta["train"]["seq_len"], backend)
    if show_next:
        best, probs = sampler.next_chars(seed_ids)
        click.echo(format_next(vocab.decode(seed_ids), vocab.decode(best), probs))
        return
    text = vocab.decode(sampler.generate(seed_ids, length, temperature, rng_seed))
    click.echo(text, nl=sys.stdout.isatty())


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
