"""Scoring text: training's validation pass (a compiled evaluation step over a batch stream, read
in streams as training reads), `eval`'s reading of a text as `predict` reads it (reading.Reader),
and a checkpoint's scores beside the unigram baseline of its training corpus."""
import math

import numpy as np
import pytensor.tensor as pt

from charrnn import model
from charrnn.backend import DEFAULT_BACKEND, compile_function
from charrnn.configs import checkpoint_configs, sampler_context, unroll_steps
from charrnn.corpus import CorpusError, Vocab, eval_stream
from charrnn.reading import Reader

# eval: a long text is read as up to STREAMS streams side by side (a power of two), each from a zero
# state and at least MIN_STREAM characters long, so that batching never shortens the context by much.
MIN_STREAM = 4096
STREAMS = 64


def compile_eval_step(params, model_cfg, shape, backend=DEFAULT_BACKEND, precision="float32", unroll=1):
    """fn(x, y, w, states) -> (summed nats, correct argmax guesses, final states) for (T, B) = `shape`
    batches (static shapes: what JAX compiles); no dropout; the matrix products in `precision`;
    unroll: time steps per scan iteration."""
    dtype, (T, B) = params["W_y"].dtype, shape
    x, y = pt.tensor("x", dtype="int32", shape=(T, B)), pt.tensor("y", dtype="int32", shape=(T, B))
    w = pt.tensor("w", dtype=dtype, shape=(T, B))
    states0 = pt.tensor("states", dtype=dtype, shape=(model_cfg.state_size, B, model_cfg.hidden))
    top, finals, _ = model.run_layers(x, states0, params, model_cfg, precision=precision, unroll=unroll)
    logits = model.output_logits(top, params, precision)
    weights = w.reshape((-1,))
    total = (model.token_nll(logits, y) * weights).sum()
    correct = (pt.eq(pt.argmax(logits, axis=-1), y.reshape((-1,))) * weights).sum()
    return compile_function([x, y, w, states0], [total, correct, finals], backend=backend)


def validation_step(params, model_cfg, train_cfg, val_ids):
    """(the validation part's batch stream, its compiled evaluation step), or (None, None) when
    the run has no validation part."""
    if val_ids is None or len(val_ids) < 2 or not train_cfg.val_frac:
        return None, None
    stream = eval_stream(val_ids, train_cfg.batch_size, train_cfg.seq_len)
    unroll = unroll_steps(train_cfg, stream.T)
    return stream, compile_eval_step(params, model_cfg, (stream.T, stream.B), train_cfg.backend, unroll=unroll)


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


def summary(nats, correct, count):
    """The figures eval reports for a summed loss and a count of correct next-character guesses."""
    mean = nats / count
    return {"nats_per_char": mean, "bits_per_char": mean / math.log(2), "perplexity": math.exp(mean),
            "accuracy": correct / count}


def score_ids(reader, ids, bar=None):
    """(summed nats, correct argmax guesses, characters scored) for each of (N,) ids[1:] predicted
    from what came before it, as a reading.Reader reads: for a carried-state network one stream
    from a zero state, or several side by side when the text is long enough for each to hold at
    least MIN_STREAM characters. A tqdm `bar` is given the characters to score and counts them."""
    n = len(ids) - 1
    B = 1 if reader.context else stream_count(n)
    x, y = side_by_side(ids[:-1], B), side_by_side(ids[1:], B)
    starts = np.arange(B) * len(x)
    real = np.minimum(starts + len(x), n) - starts  # (B,) positions each stream holds before its padding
    if bar is not None:
        bar.reset(total=n)
    total = correct = 0.0
    for s, (logp, *_) in reader.pieces(x):
        targets = y[s : s + len(logp)].astype(np.intp)
        scored = (s + np.arange(len(logp)))[:, None] < real  # (n, B): not the last stream's padding
        nll = -np.take_along_axis(logp, targets[..., None], axis=-1)[..., 0].astype(np.float64)
        total += float(nll[scored].sum())
        correct += float((logp.argmax(axis=-1) == targets)[scored].sum())
        if bar is not None:
            bar.update(int(scored.sum()))
    return total, correct, n


def stream_count(n):
    """How many streams eval reads n positions of a carried-state network's text in: the largest power
    of two up to STREAMS that leaves each at least MIN_STREAM long (1 for a text under 2 x MIN_STREAM)."""
    return min(STREAMS, 1 << (max(n // MIN_STREAM, 1).bit_length() - 1))


def side_by_side(ids, B):
    """(N, B) streams of (n,) ids: stream b holds ids[b*N : b*N + N], N = ceil(n / B), the last padded at its end."""
    N = -(-len(ids) // B)
    return np.pad(ids, (0, N * B - len(ids))).reshape(B, N).T


def score_model(params, meta, ids, backend, bar=None, precision="float32"):
    """Loss and accuracy of the checkpoint on (N,) ids, read as `predict` reads a seed (score_ids),
    the products in `precision`; an optional tqdm `bar` counts the characters scored."""
    model_cfg, train_cfg = checkpoint_configs(meta)
    reader = Reader(model.shared_params(params), model_cfg, sampler_context(train_cfg), backend, cache=True,
                    activations=False, precision=precision)
    return summary(*score_ids(reader, ids, bar))


def score_text(params, meta, text, backend=DEFAULT_BACKEND, bar=None, precision="float32"):
    """eval's report on `text`: its characters, those outside the checkpoint's vocabulary (skipped),
    and the scores of the model (its products in `precision`) and of the unigram baseline (None
    without the corpus's counts)."""
    vocab = Vocab.from_json(meta["vocab"])
    known = vocab.known(text)
    if len(known) < 2:
        raise CorpusError(f"has {len(known)} characters in the checkpoint's vocabulary; need 2")
    ids = vocab.encode(known)
    return {"characters": len(text), "unknown": len(text) - len(known), "unknown_chars": vocab.missing(text),
            "model": score_model(params, meta, ids, backend, bar, precision),
            "unigram": score_unigram(meta["char_counts"], ids) if "char_counts" in meta else None}


def score_unigram(char_counts, ids):
    """The same figures for predicting every character from the training corpus's character
    frequencies (add-one smoothed, so unseen characters cost a finite amount)."""
    counts = np.asarray(char_counts, dtype=np.float64)
    logp = np.log((counts + 1) / (counts.sum() + len(counts)))
    targets = np.asarray(ids[1:], dtype=np.int64)
    return summary(float(-logp[targets].sum()), float((targets == counts.argmax()).sum()), len(targets))
