"""eval's unigram baseline and summary figures, against values computed by hand."""
import math

import numpy as np
import pytest

from charrnn.evaluate import score_unigram, summary


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
