"""Scoring text with a checkpoint, beside the unigram baseline of its training corpus."""
import math

import numpy as np

from charrnn.checkpoint import model_config
from charrnn.corpus import eval_stream
from charrnn.model import shared_params
from charrnn.train import compile_eval_step, evaluate_stream


def summary(nats, correct, count):
    """The figures eval reports for a summed loss and a count of correct next-character guesses."""
    mean = nats / count
    return {"nats_per_char": mean, "bits_per_char": mean / math.log(2), "perplexity": math.exp(mean),
            "accuracy": correct / count}


def score_model(params, meta, ids, backend, bar=None):
    """Loss and accuracy of the checkpoint on (N,) ids, read in streams as in its validation;
    an optional tqdm `bar` counts the positions scored."""
    config, train = model_config(meta), meta.get("train", {})
    stream = eval_stream(ids, train.get("batch_size", 1), train.get("seq_len", 8))
    eval_fn = compile_eval_step(shared_params(params), config, (stream.T, stream.B), backend)
    dtype = params["W_y"].dtype
    return summary(*evaluate_stream(eval_fn, stream, config, train.get("carry_state", False), dtype, bar))


def score_unigram(char_counts, ids):
    """The same figures for predicting every character from the training corpus's character
    frequencies (add-one smoothed, so unseen characters cost a finite amount)."""
    counts = np.asarray(char_counts, dtype=np.float64)
    logp = np.log((counts + 1) / (counts.sum() + len(counts)))
    targets = np.asarray(ids[1:], dtype=np.int64)
    return summary(float(-logp[targets].sum()), float((targets == counts.argmax()).sum()), len(targets))
