"""Scoring text: the compiled evaluation step, a pass over a batch stream, and a checkpoint's
scores beside the unigram baseline of its training corpus."""
import math

import numpy as np
import pytensor.tensor as pt

from charrnn import model
from charrnn.backend import DEFAULT_BACKEND, compile_function
from charrnn.configs import checkpoint_configs, unroll_steps
from charrnn.corpus import CorpusError, Vocab, eval_stream


def compile_eval_step(params, model_cfg, shape, backend=DEFAULT_BACKEND, unroll=1):
    """fn(x, y, w, states) -> (summed nats, correct argmax guesses, final states) for (T, B) = `shape`
    batches (static shapes: what JAX compiles); no dropout. unroll: time steps per scan iteration."""
    dtype, (T, B) = params["W_y"].dtype, shape
    x, y = pt.tensor("x", dtype="int32", shape=(T, B)), pt.tensor("y", dtype="int32", shape=(T, B))
    w = pt.tensor("w", dtype=dtype, shape=(T, B))
    states0 = pt.tensor("states", dtype=dtype, shape=(model_cfg.state_size, B, model_cfg.hidden))
    top, finals, _ = model.run_layers(x, states0, params, model_cfg, unroll=unroll)
    logits = model.output_logits(top, params)
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
    return stream, compile_eval_step(params, model_cfg, (stream.T, stream.B), train_cfg.backend, unroll)


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


def score_model(params, meta, ids, backend, bar=None):
    """Loss and accuracy of the checkpoint on (N,) ids, read in streams as in its validation;
    an optional tqdm `bar` counts the positions scored."""
    model_cfg, train_cfg = checkpoint_configs(meta)
    stream = eval_stream(ids, train_cfg.batch_size, train_cfg.seq_len)
    eval_fn = compile_eval_step(model.shared_params(params), model_cfg, (stream.T, stream.B), backend,
                                unroll_steps(train_cfg, stream.T))
    dtype = params["W_y"].dtype
    return summary(*evaluate_stream(eval_fn, stream, model_cfg, train_cfg.carry_state, dtype, bar))


def score_text(params, meta, text, backend=DEFAULT_BACKEND, bar=None):
    """eval's report on `text`: its characters, those outside the checkpoint's vocabulary (skipped),
    and the scores of the model and of the unigram baseline (None without the corpus's counts)."""
    vocab = Vocab.from_json(meta["vocab"])
    known = vocab.known(text)
    if len(known) < 2:
        raise CorpusError(f"has {len(known)} characters in the checkpoint's vocabulary; need 2")
    ids = vocab.encode(known)
    return {"characters": len(text), "unknown": len(text) - len(known), "unknown_chars": vocab.missing(text),
            "model": score_model(params, meta, ids, backend, bar),
            "unigram": score_unigram(meta["char_counts"], ids) if "char_counts" in meta else None}


def score_unigram(char_counts, ids):
    """The same figures for predicting every character from the training corpus's character
    frequencies (add-one smoothed, so unseen characters cost a finite amount)."""
    counts = np.asarray(char_counts, dtype=np.float64)
    logp = np.log((counts + 1) / (counts.sum() + len(counts)))
    targets = np.asarray(ids[1:], dtype=np.int64)
    return summary(float(-logp[targets].sum()), float((targets == counts.argmax()).sum()), len(targets))
