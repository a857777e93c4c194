"""Predictions from a trained network: a compiled sampler and the per-position next-character view.

A network trained with its state carried from chunk to chunk reads the seed and keeps its state
while it generates. A network trained from a zero state on every chunk of `seq_len` characters
(the lesson's way) predicts from the last `seq_len` characters read from a zero state: the
situation it learnt in. Either way the seed and the continuation go through one compiled scan,
PIECE characters per call, with the random draws passed in, so text can be shown as it comes and
the first n characters are the same whatever the length asked for.

Every function is compiled for static shapes (JAX compiles nothing else): `next_chars` pads a
seed to a power of two, so a handful of shapes cover all seeds.
"""
import numpy as np
import pytensor
import pytensor.tensor as pt
from pytensor.tensor.special import softmax

from charrnn import model
from charrnn.backend import DEFAULT_BACKEND, cached_function, compile_function

PIECE = 256  # positions generated per compiled call: the pieces predict streams


def bucket(n):
    """The padded length for n positions: the next power of two, at least 8."""
    return max(8, 1 << (max(n, 1) - 1).bit_length())


def windows(ids, context, dtype):
    """(T, S) right-aligned windows of the last T = `context` ids ending at each of the S positions,
    and their 0/1 masks (0 where a window starts before the text): what a reset-state model reads."""
    T, S = context, len(ids)
    padded = np.concatenate([np.zeros(T - 1, dtype=np.int32), np.asarray(ids, dtype=np.int32)])
    starts = np.arange(S)[None, :] + np.arange(T)[:, None]  # (T, S) index into padded
    mask = (starts >= T - 1).astype(dtype)
    return np.ascontiguousarray(padded[starts]), mask


class Sampler:
    """Generates text from shared parameters (the live ones during training, or a checkpoint's).

    Each function is compiled on first use, so `predict --next` never pays for the generator.
    """

    def __init__(self, params, config, context=None, backend=DEFAULT_BACKEND, cache=False):
        self.params, self.config = params, config
        self.cache = cache  # keep compiled functions in the user's cache (for fixed weights: predict)
        self.context = context  # None: carry the state; an int: predict from that many characters
        self.backend = backend
        self._fns = {}

    def generate(self, seed_ids, length, temperature=1.0, rng_seed=0):
        """`length` ids continuing `seed_ids`: sampled at `temperature`, or argmax at each step when it is 0."""
        return np.concatenate([np.zeros(0, np.int32), *self.stream(seed_ids, length, temperature, rng_seed)])

    def stream(self, seed_ids, length, temperature=1.0, rng_seed=0):
        """Yield the continuation in pieces as they are generated. The seed and the continuation
        run through one compiled scan, PIECE positions per call: the seed's characters are fed in,
        the rest drawn. The random draws are made up front, so a longer continuation starts with
        the same characters."""
        if length <= 0:
            return
        S = len(seed_ids)
        n = -(-(S + length) // PIECE) * PIECE
        forced = np.full(n, -1, dtype=np.int32)  # -1: draw this position
        forced[:S] = seed_ids
        u = np.zeros(n, dtype=self._dtype)
        u[S : S + length] = np.random.default_rng(rng_seed).random(length)
        t = np.asarray(temperature, dtype=self._dtype)
        generate = self._compiled("generate", (), self._compile_generate)
        carry = self._initial_carry()
        for start in range(0, S + length, PIECE):
            *carry, ids = generate(*carry, forced[start : start + PIECE], u[start : start + PIECE], t)
            first, last = max(S - start, 0), min(S + length - start, PIECE)
            if first < last:
                yield np.asarray(ids)[first:last]

    def _initial_carry(self):
        """What the generator carries, before any character: (logits, states), or (window, mask)."""
        if self.context is None:
            return [np.zeros(self.config.vocab_size, dtype=self._dtype),
                    np.zeros((self.config.state_size, 1, self.config.hidden), dtype=self._dtype)]
        return [np.zeros(self.context, dtype=np.int32), np.zeros(self.context, dtype=self._dtype)]

    def next_chars(self, seed_ids):
        """For each seed position, the id rated most likely to come next and its probability."""
        S = len(seed_ids)
        padded = np.zeros(bucket(S), dtype=np.int32)  # right padding: a position never sees later ones
        padded[:S] = seed_ids
        fn = self._compiled("next", padded.shape, lambda: self._compile_next(len(padded)))
        probs = fn(padded[:, None]) if self.context is None else fn(*self._windows(padded))  # (S, V)
        probs = np.asarray(probs)[:S]
        best = probs.argmax(axis=1)
        return best, probs[np.arange(S), best]

    def _compiled(self, kind, shape, build):
        """The compiled function of `kind` for input `shape`, built on first use."""
        key = (kind, *shape)
        if key not in self._fns:
            if self.cache:
                shapes = tuple((name, p.type.shape, p.dtype) for name, p in self.params.items())
                graph = (key, self.config, self.context, PIECE, shapes)  # what the graph depends on
                self._fns[key] = cached_function(graph, build, self.params, self.backend)
            else:
                self._fns[key] = build()
        return self._fns[key]

    @property
    def _dtype(self):
        return self.params["W_y"].dtype

    def _windows(self, seed_ids):
        return windows(seed_ids, self.context, self._dtype)

    def _zeros(self, batch):
        return pt.zeros((self.config.state_size, batch, self.config.hidden), dtype=self._dtype)

    def _compile_next(self, S):
        p = self.params
        if self.context is None:
            seed = pt.tensor("seed", dtype="int32", shape=(S, 1))
            top, _, _ = model.run_layers(seed, self._zeros(1), p, self.config)  # (S, 1, H)
            inputs = [seed]
        else:
            window = pt.tensor("window", dtype="int32", shape=(self.context, S))
            mask = pt.tensor("mask", dtype=self._dtype, shape=(self.context, S))
            top = model.run_layers(window, self._zeros(S), p, self.config, mask=mask)[0][-1]
            inputs = [window, mask]
        return compile_function(inputs, softmax(model.output_logits(top, p), axis=-1), backend=self.backend)

    def _draw(self, logits, u_t, temperature):
        """Inverse-CDF draw from softmax(logits / temperature), or the argmax when temperature is 0."""
        probs = softmax(logits / pt.maximum(temperature, 1e-6))
        drawn = pt.minimum(pt.sum(pt.cumsum(probs) < u_t), probs.shape[0] - 1)
        return pt.switch(pt.gt(temperature, 0), drawn, pt.argmax(logits)).astype("int32")

    def _compile_generate(self):
        """fn(*carry, forced, u, temperature) -> (*carry after, ids): at each position the id
        `forced` gives, or where it is -1 one drawn with its uniform draw in u."""
        forced = pt.tensor("forced", dtype="int32", shape=(PIECE,))
        u = pt.tensor("u", dtype=self._dtype, shape=(PIECE,))
        temperature = pt.scalar("temperature", dtype=self._dtype)
        names = list(self.params)
        V, T = self.config.vocab_size, self.context

        def choose(f_t, logits, u_t):
            return pt.switch(pt.ge(f_t, 0), f_t, self._draw(logits, u_t, temperature)).astype("int32")

        if self.context is None:
            carry = [pt.tensor("logits", dtype=self._dtype, shape=(V,)),  # the prediction for the next character
                     pt.tensor("states", dtype=self._dtype, shape=(self.config.state_size, 1, self.config.hidden))]

            def step(f_t, u_t, logits, states, *weights):
                p = dict(zip(names, weights, strict=True))
                c = choose(f_t, logits, u_t)
                top, new_states = model.step_layers(c[None], states, p, self.config)
                new_logits = model.output_logits(top, p)[0]
                return pt.specify_shape(new_logits, (V,)), pt.specify_shape(new_states, states.type.shape), c
        else:
            carry = [pt.tensor("window", dtype="int32", shape=(T,)),  # the last context characters
                     pt.tensor("mask", dtype=self._dtype, shape=(T,))]  # 1 where the window holds a character

            def step(f_t, u_t, window, mask, *weights):
                p = dict(zip(names, weights, strict=True))
                top, _, _ = model.run_layers(window[:, None], self._zeros(1), p, self.config, mask=mask[:, None])
                c = choose(f_t, model.output_logits(top[-1], p)[0], u_t)
                return pt.concatenate([window[1:], c[None]]), pt.concatenate([mask[1:], pt.ones((1,), self._dtype)]), c

        *carried, ids = pytensor.scan(step, sequences=[forced, u], outputs_info=[*carry, None],
                                      non_sequences=[self.params[name] for name in names],
                                      return_updates=False, strict=True)
        inputs = [*carry, forced, u, temperature]
        return compile_function(inputs, [*(c[-1] for c in carried), ids], backend=self.backend)
