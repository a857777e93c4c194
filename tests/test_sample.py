import numpy as np
import pytest

from charrnn.model import ModelConfig, shared_params
from charrnn.sample import Sampler, until_stop
from reference import forward, random_params

V, H, CONTEXT = 5, 6, 3
RNN = ModelConfig(vocab_size=V, hidden=H, cell="rnn", layers=1, activation="relu")
GRU = ModelConfig(vocab_size=V, hidden=H, cell="gru", layers=2)


def float32_params(params):
    """The float64 reference parameters as the float32 the sampler computes in."""
    return shared_params({name: w.astype(np.float32) for name, w in params.items()})


def windowed_probs(params, ids):
    """Output distribution after reading the last CONTEXT ids from a zero state."""
    return forward(params, ids[-CONTEXT:])[1][-1]


def argmax_path(params, config, seed, length, context):
    ids = list(seed)
    for _ in range(length):
        probs = forward(params, ids[-context:] if context else ids, config)[1][-1]
        ids.append(int(np.argmax(probs)))
    return ids[len(seed):]


def varied_params(config):
    """Random parameters whose argmax continuation is not one repeated character."""
    for seed in range(50):
        params = random_params(V, H, seed=seed, config=config)
        if len(set(argmax_path(params, config, [1, 4, 0, 2], 12, CONTEXT if config is RNN else None))) > 2:
            return params
    raise AssertionError("no varied parameters found")


@pytest.fixture(scope="module")
def rnn():
    params = varied_params(RNN)
    return params, Sampler(float32_params(params), RNN, CONTEXT)


@pytest.fixture(scope="module")
def gru():
    params = varied_params(GRU)
    return params, Sampler(float32_params(params), GRU, context=None)


def test_temperature_zero_is_argmax_over_the_context_window(rnn):
    params, sampler = rnn
    got = sampler.generate([1, 4, 0, 2], 12, temperature=0)
    assert got.tolist() == argmax_path(params, RNN, [1, 4, 0, 2], 12, CONTEXT)


def test_temperature_zero_with_carried_state_continues_the_whole_text(gru):
    params, sampler = gru
    got = sampler.generate([1, 4, 0, 2], 12, temperature=0)
    assert got.tolist() == argmax_path(params, GRU, [1, 4, 0, 2], 12, None)


def test_next_chars_equal_numpy(rnn, gru):
    seed = [3, 1, 4, 1, 0]
    for (params, sampler), config in ((rnn, RNN), (gru, GRU)):
        best, prob = sampler.next_chars(seed)
        for i in range(len(seed)):
            context = seed[: i + 1][-CONTEXT:] if config is RNN else seed[: i + 1]
            want = forward(params, context, config)[1][-1]
            assert best[i] == np.argmax(want)
            assert prob[i] == pytest.approx(want.max(), rel=1e-5)


def test_sampling_is_reproducible_and_seeded(rnn, gru):
    for _, sampler in (rnn, gru):
        a = sampler.generate([1, 2], 50, temperature=1.0, rng_seed=1)
        assert np.array_equal(a, sampler.generate([1, 2], 50, temperature=1.0, rng_seed=1))
        assert not np.array_equal(a, sampler.generate([1, 2], 50, temperature=1.0, rng_seed=2))


@pytest.mark.parametrize("temperature", [1.0, 0.5])
def test_draws_follow_the_tempered_distribution(temperature):
    p = np.array([0.05, 0.1, 0.15, 0.3, 0.4])
    flat = random_params(V, H)
    flat.update(W_y=np.zeros((H, V)), b_y=np.log(p))  # the output ignores the state
    draws = Sampler(float32_params(flat), RNN, CONTEXT).generate([0], 20000, temperature=temperature, rng_seed=0)
    want = p ** (1 / temperature) / (p ** (1 / temperature)).sum()
    freq = np.bincount(draws, minlength=V) / len(draws)
    np.testing.assert_allclose(freq, want, atol=0.015)


def test_prediction_has_no_dropout():
    config = ModelConfig(vocab_size=V, hidden=H, cell="gru", layers=2, dropout=0.5)
    params = random_params(V, H, seed=5, config=config)
    sampler = Sampler(float32_params(params), config)
    best, prob = sampler.next_chars([1, 2, 3])
    want = forward(params, [1, 2, 3], config)[1]  # the reference without any dropout mask
    np.testing.assert_allclose(prob, want.max(axis=1), rtol=1e-5)
    assert np.array_equal(sampler.generate([1], 30, 1.0, 3), sampler.generate([1], 30, 1.0, 3))


P = np.array([0.05, 0.1, 0.15, 0.3, 0.4])
CHI2_999 = {1: 10.83, 2: 13.82, 3: 16.27}  # chi-square quantiles at 0.999 by degrees of freedom


@pytest.fixture(scope="module")
def flat():
    """A sampler whose every prediction is P, whatever it read; and one that predicts all ids equally."""
    params = random_params(V, H)
    params.update(W_y=np.zeros((H, V)), b_y=np.log(P))  # the output ignores the state
    return Sampler(float32_params(params), RNN, CONTEXT)


@pytest.mark.parametrize("temperature, top_k, top_p, allowed", [
    (1.0, 2, 1.0, [3, 4]),
    (1.0, None, 0.6, [3, 4]),  # 0.4 < 0.6 <= 0.4 + 0.3
    (1.0, None, 0.75, [2, 3, 4]),
    (1.0, 4, 0.75, [2, 3, 4]),
    (1.0, 1, 1.0, [4]),
    (0.5, None, 0.9, [2, 3, 4]),  # tempered: 0.561, 0.316, 0.079, ...: 0.877 < 0.9
    (0.5, 2, 0.99, [3, 4]),
])
def test_truncated_draws_follow_the_renormalised_distribution(flat, temperature, top_k, top_p, allowed):
    n = 20000
    draws = flat.generate([0], n, temperature=temperature, rng_seed=0, top_k=top_k, top_p=top_p)
    counts = np.bincount(draws, minlength=V)
    assert set(np.flatnonzero(counts)) == set(allowed)
    tempered = P ** (1 / temperature)
    want = n * tempered[allowed] / tempered[allowed].sum()
    if len(allowed) > 1:
        chi2 = ((counts[allowed] - want) ** 2 / want).sum()
        assert chi2 < CHI2_999[len(allowed) - 1], (counts, want)


def test_top_k_ties_go_to_the_lower_ids():
    params = random_params(V, H)
    params.update(W_y=np.zeros((H, V)), b_y=np.zeros(V))  # every id equally likely
    draws = Sampler(float32_params(params), RNN, CONTEXT).generate([0], 2000, rng_seed=0, top_k=2)
    counts = np.bincount(draws, minlength=V)
    assert counts[2:].sum() == 0 and min(counts[:2]) > 900


def test_truncation_keeps_the_prefix_and_the_argmax(gru):
    params, sampler = gru
    long = sampler.generate([1, 2], 300, temperature=1.0, rng_seed=3, top_k=3, top_p=0.9)
    assert np.array_equal(long[:40], sampler.generate([1, 2], 40, temperature=1.0, rng_seed=3, top_k=3, top_p=0.9))
    greedy = sampler.generate([1, 2], 20, temperature=0)
    assert np.array_equal(greedy, sampler.generate([1, 2], 20, temperature=0, top_k=2, top_p=0.5))


def test_a_window_reads_only_the_last_context_characters(rnn):
    _, sampler = rnn
    long_seed = [3, 1, 4, 1, 0, 2, 4]
    assert np.array_equal(sampler.generate(long_seed, 30, rng_seed=2), sampler.generate(long_seed[-CONTEXT:], 30, rng_seed=2))


@pytest.mark.parametrize("pieces, stops, drop, want", [
    (["abc", "def"], ["cd"], False, "abcd"),
    (["abc", "def"], ["cd"], True, "ab"),
    (["ab", "c", "de"], ["bcd", "e"], False, "abcd"),  # straddles three pieces
    (["ab", "c", "de"], ["bcd", "e"], True, "a"),
    (["xa", "b"], ["ab", "b"], True, "x"),  # both end at b: the longer is dropped
    (["abc", "abc"], ["zz"], True, "abcabc"),
    (["ab", "ca"], ["cab"], True, "abca"),  # a held prefix that turns out not to be a stop is yielded
    (["stop"], ["stop"], True, ""),
])
def test_until_stop(pieces, stops, drop, want):
    out = list(until_stop(iter(pieces), stops, drop))
    assert "".join(out) == want


def test_until_stop_streams_and_holds_back_only_a_possible_stop():
    out = list(until_stop(iter(["hello w", "orld", "!!"]), ["wor", "ld!"], drop=True))
    assert out[0] == "hello "  # "w" waits: it may begin "wor"
    assert "".join(out) == "hello "
    stream = until_stop(iter(["abc", "de", "fg"]), ["xyz"])
    assert next(stream) == "abc"  # kept stops: nothing waits
