"""Beam search: the continuation a network rates most likely as a whole, not one character at a time.

W beams run as one batch of W through the sampler's compiled step (`Sampler.fork`, `extend`):
one compiled call per character for all beams, then on the host the W x V candidate scores
(summed log-probabilities) and the best W of them. A candidate that ends with a stop is finished
and leaves the beam (only those among the best W count); the search ends at `length`
characters or once no live beam can beat the best finished one, and returns the best finished or
full-length one by score / length penalty. Deterministic: ties
go to the lower (beam, id).
"""
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class BeamConfig:
    width: int = 4  # beams kept at each step; 1 is the argmax continuation
    alpha: float = 0.0  # length penalty exponent (GNMT); 0: summed log-probability alone
    stops: tuple = ()  # id sequences that finish a beam (kept at its end)


def length_penalty(n, alpha):
    """GNMT's ((5 + n) / 6) ** alpha (Wu et al., 2016): the divisor of an n-character score."""
    return ((5 + n) / 6) ** alpha


def beam_search(sampler, seed_ids, length, config):
    """The best continuation of `seed_ids`, at most `length` ids, as an int32 array."""
    if length <= 0:
        return np.zeros(0, np.int32)
    W, V = config.width, sampler.config.vocab_size
    carry, first = sampler.fork(seed_ids, W)
    log_probs = np.repeat(first[None], W, axis=0)  # (W, V)
    scores = np.full(W, -np.inf)
    scores[0] = 0.0  # one live beam to begin with; the copies wait
    history, finished = [], []  # (parents, ids) per step; (score, n, beam, id) of finished candidates
    for n in range(1, length + 1):
        candidates = (scores[:, None] + log_probs).ravel()  # (W * V,)
        parents, ids, chosen = _select(candidates, V, W, n, history, config, finished)
        history.append((parents, ids))
        scores = candidates[chosen]
        if len(chosen) < W or not np.isfinite(scores[0]) or _settled(finished, scores[0], length, config.alpha):
            break
        if n < length:
            carry, log_probs = sampler.extend(carry, parents, ids)
    if not _settled(finished, scores[0], length, config.alpha):  # the live beams compete too
        finished += [(s / length_penalty(n, config.alpha), n, j, None) for j, s in enumerate(scores) if np.isfinite(s)]
    _, n, beam, last = max(finished, key=lambda f: f[0])  # the first of equals
    path = _path(history[: n if last is None else n - 1], beam)
    return np.array(path + ([] if last is None else [last]), dtype=np.int32)


def _settled(finished, best_live, length, alpha):
    """Whether no live beam can beat the best finished one: a summed log-probability only falls as
    a beam grows, so `best_live` / the penalty at `length` bounds every live beam's final score."""
    return bool(finished) and max(f[0] for f in finished) >= best_live / length_penalty(length, alpha)


def _select(candidates, V, W, n, history, config, finished):
    """The W best candidates that do not end a beam: their parents, ids and flat indices. Those
    among the W best that end with a stop go to `finished` with their penalised scores."""
    order = np.argsort(-candidates, kind="stable")
    parents, ids, chosen = [], [], []
    for rank, flat in enumerate(order):
        if len(chosen) == W:
            break
        beam, c = divmod(int(flat), V)
        if config.stops and _ends_with_stop(history, beam, c, config.stops):
            if rank < W and np.isfinite(candidates[flat]):
                finished.append((candidates[flat] / length_penalty(n, config.alpha), n, beam, c))
            continue
        parents.append(beam)
        ids.append(c)
        chosen.append(flat)
    return np.array(parents, np.int32), np.array(ids, np.int32), np.array(chosen)


def _ends_with_stop(history, beam, c, stops):
    """Whether beam `beam` (after the steps in history) followed by id c ends with one of `stops`."""
    longest = max(map(len, stops))
    tail = _path(history, beam, longest - 1) + [c]
    return any(len(stop) <= len(tail) and tail[-len(stop) :] == list(stop) for stop in stops)


def _path(history, beam, limit=None):
    """The ids of beam `beam` after the steps in `history` (its last `limit` ids if given)."""
    ids = []
    for parents, chosen in reversed(history):
        if limit is not None and len(ids) == limit:
            break
        ids.append(int(chosen[beam]))
        beam = parents[beam]
    return ids[::-1]
