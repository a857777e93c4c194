import itertools

import numpy as np
import pytest

from charrnn.beam import BeamConfig, beam_search, length_penalty
from charrnn.model import ModelConfig, shared_params
from charrnn.sample import Sampler
from reference import forward, random_params

V, H, LENGTH, CONTEXT = 3, 4, 4, 2
GRU = ModelConfig(vocab_size=V, hidden=H, cell="gru", layers=2)
RNN = ModelConfig(vocab_size=V, hidden=H, cell="rnn", layers=1, activation="tanh")
SEED = [0, 2, 1]


def log_prob(params, config, seed, continuation, context):
    """Summed log-probability of `continuation` after `seed`, by the numpy reference."""
    ids, total = list(seed), 0.0
    for c in continuation:
        total += np.log(forward(params, ids[-context:] if context else ids, config)[1][-1][c])
        ids.append(c)
    return total


def brute_force(params, config, context, stops=(), alpha=0.0):
    """The best of every continuation of at most LENGTH ids that ends at its first stop, or has
    none and LENGTH ids, by summed log-probability / length penalty."""
    best, best_score = None, -np.inf
    for n in range(1, LENGTH + 1):
        for seq in itertools.product(range(V), repeat=n):
            ends = [i + len(s) for s in stops for i in range(n - len(s) + 1) if list(seq[i : i + len(s)]) == list(s)]
            if (min(ends) if ends else LENGTH) != n:
                continue
            score = log_prob(params, config, SEED, seq, context) / length_penalty(n, alpha)
            if score > best_score:
                best, best_score = list(seq), score
    return best


def greedy(params, config, context):
    ids = list(SEED)
    for _ in range(LENGTH):
        ids.append(int(np.argmax(forward(params, ids[-context:] if context else ids, config)[1][-1])))
    return ids[len(SEED):]


def searched(config, context):
    """Parameters whose greedy continuation is not the best one, so that width matters; and a sampler."""
    for seed in range(100):
        params = random_params(V, H, seed=seed, config=config)
        params = {name: w * 3 for name, w in params.items()}  # sharper distributions
        if greedy(params, config, context) != brute_force(params, config, context):
            return params, Sampler(shared_params({n: w.astype(np.float32) for n, w in params.items()}), config, context)
    raise AssertionError("no parameters where greedy misses the best continuation")


@pytest.fixture(scope="module", params=["carried", "window"])
def model(request):
    config, context = (GRU, None) if request.param == "carried" else (RNN, CONTEXT)
    return (config, context, *searched(config, context))


def test_width_one_is_the_argmax(model):
    config, context, params, sampler = model
    got = beam_search(sampler, SEED, LENGTH, BeamConfig(width=1)).tolist()
    assert got == greedy(params, config, context)
    assert got == sampler.generate(SEED, LENGTH, temperature=0).tolist()


def test_a_wide_beam_finds_the_best_of_every_continuation(model):
    config, context, params, sampler = model
    width = V ** (LENGTH - 1)  # keeps every prefix: the search is exhaustive
    assert beam_search(sampler, SEED, LENGTH, BeamConfig(width=width)).tolist() == brute_force(params, config, context)


def test_a_narrow_beam_keeps_the_best_prefixes(model):
    """Width 2 against a plain re-implementation over whole sequences (not an exhaustive search)."""
    config, context, params, sampler = model
    beams = [((), 0.0)]
    for _ in range(LENGTH):
        candidates = [(seq + (c,), log_prob(params, config, SEED, seq + (c,), context)) for seq, _ in beams for c in range(V)]
        beams = sorted(candidates, key=lambda b: -b[1])[:2]
    assert beam_search(sampler, SEED, LENGTH, BeamConfig(width=2)).tolist() == list(beams[0][0])


# (the carried model's best changes with alpha for [(2, 0)], [(0,)] and [(1, 2)])
@pytest.mark.parametrize("stops, alpha", [([(2,)], 0.0), ([(2, 0)], 0.0), ([(2, 0)], 1.0), ([(0,)], 3.0),
                                          ([(1, 2)], 3.0), ([(1,), (0, 0)], 1.0)])
def test_stops_finish_beams(model, stops, alpha):
    config, context, params, sampler = model
    width = V ** LENGTH  # exhaustive, finished or not
    got = beam_search(sampler, SEED, LENGTH, BeamConfig(width=width, alpha=alpha, stops=tuple(stops))).tolist()
    assert got == brute_force(params, config, context, stops, alpha)


def test_a_long_seed_is_read_whole_or_by_its_window(model):
    config, context, params, sampler = model
    seed = [0, 1, 2] * 100  # more than one compiled piece of the reader
    got = beam_search(sampler, seed, 3, BeamConfig(width=1)).tolist()
    assert got == sampler.generate(seed, 3, temperature=0).tolist()
