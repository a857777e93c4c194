"""What a network learnt, position by position: the computation behind `charrnn explain`.

The text is read exactly as `predict` reads a seed (sample.py): a network trained with its state
carried reads the whole text from a zero state; one trained from a zero state on every chunk
predicts each character from the last `seq_len` characters, read from a zero state. Characters
outside the vocabulary are skipped by the network (as `predict --unknown skip` drops them): they
are shown, but neither read nor scored.

The reading is reading.Reader's, which `eval` shares: log-probabilities of the next character and,
per layer, what the cell's tape keeps (h, tanh(c) for the LSTM, and the gate activations).
Everything else here is NumPy over those arrays.
"""
import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from charrnn import cells, model
from charrnn.backend import DEFAULT_BACKEND
from charrnn.configs import checkpoint_configs, sampler_context
from charrnn.corpus import CorpusError, Vocab, code_points
from charrnn.evaluate import summary
from charrnn.reading import Reader

SATURATED = (0.1, 0.9)  # a sigmoid gate below the first or above the second is saturated (Karpathy et al.)
LN2 = math.log(2)


@dataclass
class Explanation:
    """A text as the network read it. Arrays are per known character (M of them), in text order."""

    text: str
    vocab: object  # the checkpoint's corpus.Vocab
    positions: np.ndarray  # (M,) where each character the vocabulary knows sits in `text`
    ids: np.ndarray  # (M,) their ids
    logp_next: np.ndarray  # (M, V) log-probabilities of the next known character, after reading each
    layers: list  # per layer: "h" (M, H), and "tanh_c" (M, H), "gates" (M, G·H) where the cell has them
    cell: cells.Cell  # the cell that read it (which gates are sigmoids)

    @cached_property
    def expected(self):
        """(M, V) probabilities the network gave each known character before it came; row 0 is NaN
        (nothing read yet: the first character is never scored, as in `eval`)."""
        nan = np.full((1, self.logp_next.shape[1]), np.nan, dtype=np.float64)
        return np.exp(np.concatenate([nan, self.logp_next[:-1].astype(np.float64)]))

    @cached_property
    def bits(self):
        """(M,) -log2 of the probability of each known character given all before it (NaN for the first)."""
        logp = np.concatenate([[np.nan], self.logp_next[np.arange(len(self.ids) - 1), self.ids[1:]]])
        return -logp.astype(np.float64) / LN2

    @cached_property
    def prob(self):
        """(M,) the probability of each known character given all before it (NaN for the first)."""
        return self.expected[np.arange(len(self.ids)), self.ids]

    @cached_property
    def rank(self):
        """(M,) 1 + how many characters the network rated above the one that came (0 for the first)."""
        p = self.expected
        return np.concatenate([[0], 1 + (p[1:] > self.prob[1:, None]).sum(axis=1)])

    @cached_property
    def entropy(self):
        """(M,) entropy in bits of the distribution each known character was drawn against."""
        p = self.expected
        return -(p * np.log2(np.where(p > 0, p, 1))).sum(axis=1)

    def top(self, k):
        """((M, k) ids, (M, k) probabilities) of the k most likely characters at each position, most likely first."""
        p = np.nan_to_num(self.expected, nan=0.0)
        k = min(k, p.shape[1])
        order = np.argsort(-p, axis=1, kind="stable")[:, :k]
        return order, np.take_along_axis(p, order, axis=1)

    def scores(self):
        """eval's figures (`evaluate.summary`) for this reading of the text."""
        nats = float(np.nansum(self.bits) * LN2)
        return summary(nats, float((self.rank[1:] == 1).sum()), len(self.ids) - 1)

    def most_surprising(self, n=10):
        """Indices (into the known characters) of the n largest bits, largest first."""
        return np.argsort(-np.nan_to_num(self.bits, nan=-1.0), kind="stable")[: min(n, len(self.ids) - 1)]


def explain(reader, vocab, text):
    """The Explanation of `text`; CorpusError when fewer than 2 of its characters are in the vocabulary."""
    codes = np.array([ord(c) for c in vocab.chars])
    known = np.isin(code_points(text), codes)
    positions = np.flatnonzero(known)
    if len(positions) < 2:
        raise CorpusError(f"has {len(positions)} characters in the checkpoint's vocabulary; need 2")
    ids = vocab.encode("".join(text[i] for i in positions)).astype(np.int32)
    logp, layers = reader.read(ids)
    return Explanation(text, vocab, positions, ids, logp, layers, reader.cell)


def text_features(text):
    """Features of each character of `text` computed from the text alone, as (N,) float arrays:
    the kinds of structure Karpathy et al. found single units tracking."""
    quote = depth = column = 0
    names = ("inside quotes", "bracket depth", "position in line", "start of a word", "upper case")
    out = np.zeros((len(names), len(text)))
    previous = "\n"
    for i, c in enumerate(text):
        quote ^= c == '"'
        depth = max(depth + (c in "([{") - (c in ")]}"), 0)
        out[:, i] = (quote or c == '"', depth, column, c.isalnum() and not previous.isalnum(), c.isupper())
        column = 0 if c == "\n" else column + 1
        previous = c
    return dict(zip(names, out))


def correlations(acts, feature):
    """(H,) Pearson correlation of each unit of (M, H) `acts` with an (M,) feature (0 where either is constant)."""
    a = acts - acts.mean(axis=0)
    f = feature - feature.mean()
    denom = np.sqrt((a * a).sum(axis=0) * (f * f).sum())
    return np.divide(f @ a, denom, out=np.zeros(a.shape[1]), where=denom > 0)


def units_worth_a_look(e, per_feature=3):
    """For each text feature that varies, the units whose activation correlates most with it:
    dicts of feature, layer, kind ("h" or "tanh_c"), unit, r, strongest first."""
    found = []
    for name, values in text_features(e.text).items():
        feature = values[e.positions]
        if feature.std() == 0:
            continue
        candidates = [(r, layer, kind, unit) for layer, acts in enumerate(e.layers) for kind in ("h", "tanh_c")
                      if kind in acts for unit, r in enumerate(correlations(acts[kind].astype(np.float64), feature))]
        candidates.sort(key=lambda c: -abs(c[0]))
        found += [{"feature": name, "layer": layer, "kind": kind, "unit": unit, "r": float(r)}
                  for r, layer, kind, unit in candidates[:per_feature]]
    return found


def saturation(e):
    """Per layer, per sigmoid gate of the cell: (fraction of positions below 0.1, above 0.9), each (H,)."""
    low, high, cell = *SATURATED, e.cell
    out = []
    for acts in e.layers:
        if "gates" not in acts:
            break
        g = acts["gates"].reshape(len(e.ids), len(cell.gate_names), -1)  # (M, gates, H)
        out.append({name: ((g[:, i] < low).mean(axis=0), (g[:, i] > high).mean(axis=0))
                    for i, name in enumerate(cell.gate_names) if name in cell.sigmoid_gates})
    return out


def rows(e, k=5):
    """One dict per position of the text, for --format tsv and json: position, char, known, bits,
    prob, rank, entropy (None where not scored: the first character, or one outside the
    vocabulary) and top, the k most likely characters there with their probabilities."""
    index = np.full(len(e.text), -1)
    index[e.positions] = np.arange(len(e.ids))
    top_ids, top_p = e.top(k)
    chars = e.vocab.chars
    for i, c in enumerate(e.text):
        j = int(index[i])
        scored = j > 0
        yield {"position": i, "char": c, "known": j >= 0, "bits": float(e.bits[j]) if scored else None,
               "prob": float(e.prob[j]) if scored else None, "rank": int(e.rank[j]) if scored else None,
               "entropy": float(e.entropy[j]) if scored else None,
               "top": [[chars[t], float(p)] for t, p in zip(top_ids[j], top_p[j])] if scored else []}


def explain_checkpoint(params, meta, text, backend=DEFAULT_BACKEND):
    """The Explanation of `text` by a checkpoint's (params, meta), read as `predict` reads a seed;
    its compiled functions are kept in the user's cache."""
    model_cfg, train_cfg = checkpoint_configs(meta)
    reader = Reader(model.shared_params(params), model_cfg, sampler_context(train_cfg), backend, cache=True)
    return explain(reader, Vocab.from_json(meta["vocab"]), text)
