import numpy as np
import pytest

from charrnn.model import shared_params
from charrnn.sample import Sampler
from reference import forward, random_params

V, H, CONTEXT = 5, 6, 3


@pytest.fixture(scope="module")
def params():
    return random_params(V, H, seed=18)  # a seed whose argmax path varies


@pytest.fixture(scope="module")
def sampler(params):
    return Sampler(shared_params(params), CONTEXT)


def numpy_next_probs(params, ids):
    """Output distribution after reading the last CONTEXT ids from a zero state."""
    return forward(params, ids[-CONTEXT:])[1][-1]


def test_temperature_zero_is_argmax_over_the_context_window(params, sampler):
    ids = [1, 4, 0, 2]
    got = sampler.generate(ids, 12, temperature=0)
    for c in got:
        assert c == np.argmax(numpy_next_probs(params, ids))
        ids.append(int(c))
    assert len(set(got.tolist())) > 1


def test_next_chars_equal_numpy(params, sampler):
    seed = [3, 1, 4, 1, 0]
    best, prob = sampler.next_chars(seed)
    for i in range(len(seed)):
        want = numpy_next_probs(params, seed[: i + 1])
        assert best[i] == np.argmax(want)
        assert prob[i] == pytest.approx(want.max(), rel=1e-9)


def test_sampling_is_reproducible_and_seeded(sampler):
    a = sampler.generate([1, 2], 50, temperature=1.0, rng_seed=1)
    assert np.array_equal(a, sampler.generate([1, 2], 50, temperature=1.0, rng_seed=1))
    assert not np.array_equal(a, sampler.generate([1, 2], 50, temperature=1.0, rng_seed=2))


@pytest.mark.parametrize("temperature", [1.0, 0.5])
def test_draws_follow_the_tempered_distribution(temperature):
    p = np.array([0.05, 0.1, 0.15, 0.3, 0.4])
    flat = random_params(V, H)
    flat.update(W_y=np.zeros((H, V)), b_y=np.log(p))  # the output ignores the state
    draws = Sampler(shared_params(flat), CONTEXT).generate([0], 20000, temperature=temperature, rng_seed=0)
    want = p ** (1 / temperature) / (p ** (1 / temperature)).sum()
    freq = np.bincount(draws, minlength=V) / len(draws)
    np.testing.assert_allclose(freq, want, atol=0.015)
