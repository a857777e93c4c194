"""eval's unigram baseline and summary figures against values computed by hand, and its reading of
a text against explain's and a plain numpy loop."""
import math
from dataclasses import asdict

import numpy as np
import pytest

from charrnn import evaluate, reading
from charrnn.configs import TrainConfig
from charrnn.corpus import Vocab
from charrnn.evaluate import score_ids, score_text, score_unigram, summary
from charrnn.explain import explain_checkpoint
from charrnn.model import ModelConfig, shared_params
from charrnn.reading import Reader
from reference import loss, random_params, trace


def test_score_unigram_equals_the_hand_computed_add_one_baseline():
    # Training counts a: 3, b: 1, c: 0; add-one smoothed over 3 characters: p = 4/7, 2/7, 1/7.
    ids = np.array([0, 1, 0, 2, 0], dtype=np.uint8)  # the targets are ids[1:] = b, a, c, a
    got = score_unigram([3, 1, 0], ids)
    nats = (4 * math.log(7) - math.log(2 * 4 * 1 * 4)) / 4  # -(ln 2/7 + ln 4/7 + ln 1/7 + ln 4/7) / 4
    assert got["nats_per_char"] == pytest.approx(nats, rel=1e-12)
    assert nats == pytest.approx(1.079476, abs=1e-6)
    assert got["bits_per_char"] == pytest.approx(nats / math.log(2))
    assert got["perplexity"] == pytest.approx(math.exp(nats))
    assert got["accuracy"] == 0.5  # always guessing a: right for 2 of the 4 targets


def test_summary_of_a_summed_loss():
    assert summary(6.0, 3, 4) == {"nats_per_char": 1.5, "bits_per_char": 1.5 / math.log(2),
                                  "perplexity": math.exp(1.5), "accuracy": 0.75}


# eval's reading, against explain's and a plain numpy loop, on random weights (nothing to train).

V, H = 5, 4
VOCAB = Vocab("abcde")
TEXT = VOCAB.decode(np.random.default_rng(4).integers(0, V, 70))


def checkpoint_of(cell, **train):
    """(float32 params, float64 params, ModelConfig, metadata) of a 2-layer network of `cell` with
    random weights, as a checkpoint trained with the TrainConfig `train` would hold them."""
    config = ModelConfig(vocab_size=V, hidden=H, cell=cell, layers=2)
    p = {k: 0.5 * w for k, w in random_params(V, H, seed=2, config=config).items()}  # relu stays in range
    meta = {"version": 2, "vocab": VOCAB.to_json(), "model": asdict(config), "train": asdict(TrainConfig(**train)),
            "char_counts": [1] * V}
    return {k: w.astype(np.float32) for k, w in p.items()}, p, config, meta


class Bar:
    """What eval's progress bar is told: the total to score, and each count scored."""

    def reset(self, total):
        self.total, self.counts = total, []

    def update(self, n):
        self.counts.append(n)


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_eval_reads_a_short_text_as_explain_does_and_as_a_numpy_loop(cell):
    params, p, config, meta = checkpoint_of(cell)
    text = TEXT[:20] + "?" + TEXT[20:40]  # a character outside the vocabulary: skipped by both
    scores = score_text(params, meta, text)["model"]
    nats = scores["nats_per_char"] * 39
    e = explain_checkpoint(params, meta, text)
    assert nats == pytest.approx(float(np.nansum(e.bits)) * math.log(2), rel=1e-5)
    assert scores["accuracy"] == pytest.approx(e.scores()["accuracy"])
    ids = VOCAB.encode(VOCAB.known(text))
    assert nats == pytest.approx(loss(p, ids[:-1], ids[1:], config), rel=1e-5)  # one stream, state carried


def test_a_long_text_is_read_in_long_streams_side_by_side(monkeypatch):
    monkeypatch.setattr(evaluate, "MIN_STREAM", 16)  # 69 positions: 4 streams of 18, the last of 15
    monkeypatch.setattr(reading, "PIECE", 32)  # 8 positions of each stream a call: three calls, the state carried
    params, p, config, meta = checkpoint_of("gru")
    ids = VOCAB.encode(TEXT)
    bar = Bar()
    reader = Reader(shared_params(params), config, activations=False)
    nats, correct, count = score_ids(reader, ids, bar)
    streams = [ids[b * 18 : b * 18 + 19] for b in range(4)]  # each from a zero state; the next starts where it ends
    assert [len(s) - 1 for s in streams] == [18, 18, 18, 15] and count == 69
    assert nats == pytest.approx(sum(loss(p, s[:-1], s[1:], config) for s in streams), rel=1e-5)
    assert bar.total == 69 and sum(bar.counts) == 69 and len(bar.counts) == 3
    assert 0 <= correct <= 69


def test_streams_are_a_power_of_two_each_at_least_min_stream_long():
    m = evaluate.MIN_STREAM
    assert [evaluate.stream_count(n) for n in (1, m, 2 * m - 1, 2 * m, 3 * m, 5 * m, 100 * m)] == [1, 1, 1, 2, 2, 4, 64]


def test_a_reset_state_network_reads_each_character_from_the_seq_len_before_it(monkeypatch):
    monkeypatch.setattr(reading, "WINDOWS", 8)  # 69 windows in nine calls
    params, p, config, meta = checkpoint_of("rnn", carry_state=False, seq_len=3)
    ids = VOCAB.encode(TEXT)
    scores = score_text(params, meta, TEXT)["model"]
    want = -sum(np.log(trace(p, ids[max(0, j - 3) : j], config)[1][-1][ids[j]]) for j in range(1, len(ids)))
    assert scores["nats_per_char"] * 69 == pytest.approx(want, rel=1e-5)
