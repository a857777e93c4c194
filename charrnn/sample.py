"""Predictions from a trained network: a compiled sampler and the per-position next-character view.

A network trained with its state carried from chunk to chunk reads the seed and keeps its state
while it generates. A network trained from a zero state on every chunk of `seq_len` characters
(the lesson's way) predicts from the last `seq_len` characters read from a zero state: the
situation it learnt in. Either way generation is a compiled scan over the output length (in
pieces, so text can be shown as it comes), with the random draws passed in, so the same seed and
rng seed give the same text however it is cut into pieces.
"""
import numpy as np
import pytensor
import pytensor.tensor as pt
from pytensor.tensor.special import softmax

from charrnn import model
from charrnn.backend import DEFAULT_BACKEND, compile_function


class Sampler:
    """Generates text from shared parameters (the live ones during training, or a checkpoint's).

    Each function is compiled on first use, so `predict --next` never pays for the generator.
    """

    def __init__(self, params, config, context=None, backend=DEFAULT_BACKEND):
        self.params, self.config = params, config
        self.context = context  # None: carry the state; an int: predict from that many characters
        self.backend = backend
        self._generate = self._prime = self._next = None

    def generate(self, seed_ids, length, temperature=1.0, rng_seed=0):
        """`length` ids continuing `seed_ids`: sampled at `temperature`, or argmax at each step when it is 0."""
        return np.concatenate(list(self.stream(seed_ids, length, temperature, rng_seed, chunk=length)))

    def stream(self, seed_ids, length, temperature=1.0, rng_seed=0, chunk=32):
        """Yield the continuation in pieces of up to `chunk` ids as they are generated. The random
        draws are made up front, so the pieces together equal one call generating all of it."""
        if self._generate is None:
            self._generate = self._compile_generate()
        u = np.random.default_rng(rng_seed).random(length).astype(self._dtype)
        t = np.asarray(temperature, dtype=self._dtype)
        carry = self._start(seed_ids)
        for start in range(0, length, chunk):
            *carry, ids = self._generate(*carry, u[start : start + chunk], t)
            yield ids

    def _start(self, seed_ids):
        """The generator's state after the seed: (logits, states) carried, or the (window, mask)."""
        if self.context is None:
            if self._prime is None:
                self._prime = self._compile_prime()
            return self._prime(np.asarray(seed_ids, dtype=np.int32)[:, None])
        window, mask = self._windows(seed_ids)
        return [np.ascontiguousarray(window[:, -1]), np.ascontiguousarray(mask[:, -1])]

    def next_chars(self, seed_ids):
        """For each seed position, the id rated most likely to come next and its probability."""
        if self._next is None:
            self._next = self._compile_next()
        if self.context is None:
            probs = self._next(np.asarray(seed_ids, dtype=np.int32)[:, None])
        else:
            probs = self._next(*self._windows(seed_ids))  # (S, V)
        best = probs.argmax(axis=1)
        return best, probs[np.arange(len(best)), best]

    @property
    def _dtype(self):
        return self.params["W_y"].dtype

    def _windows(self, seed_ids):
        """(T, S) right-aligned context windows ending at each seed position, and their 0/1 masks."""
        T, S = self.context, len(seed_ids)
        padded = np.concatenate([np.zeros(T - 1, dtype=np.int32), np.asarray(seed_ids, dtype=np.int32)])
        starts = np.arange(S)[None, :] + np.arange(T)[:, None]  # (T, S) index into padded
        mask = (starts >= T - 1).astype(self._dtype)
        return np.ascontiguousarray(padded[starts]), mask

    def _zeros(self, batch):
        return pt.zeros((self.config.state_size, batch, self.config.hidden), dtype=self._dtype)

    def _compile_next(self):
        p = self.params
        if self.context is None:
            seed = pt.matrix("seed", dtype="int32")  # (S, 1)
            top, _ = model.run_layers(seed, self._zeros(1), p, self.config)  # (S, 1, H)
            inputs = [seed]
        else:
            window = pt.matrix("window", dtype="int32")  # (T, S)
            mask = pt.matrix("mask", dtype=self._dtype)  # (T, S)
            top = model.run_layers(window, self._zeros(window.shape[1]), p, self.config, mask=mask)[0][-1]
            inputs = [window, mask]
        return compile_function(inputs, softmax(model.output_logits(top, p), axis=-1), backend=self.backend)

    def _draw(self, logits, u_t, temperature):
        """Inverse-CDF draw from softmax(logits / temperature), or the argmax when temperature is 0."""
        probs = softmax(logits / pt.maximum(temperature, 1e-6))
        drawn = pt.minimum(pt.sum(pt.cumsum(probs) < u_t), probs.shape[0] - 1)
        return pt.switch(pt.gt(temperature, 0), drawn, pt.argmax(logits)).astype("int32")

    def _compile_prime(self):
        seed = pt.matrix("seed", dtype="int32")  # (S, 1)
        top, states = model.run_layers(seed, self._zeros(1), self.params, self.config)
        return compile_function([seed], [model.output_logits(top[-1], self.params)[0], states], backend=self.backend)

    def _compile_generate(self):
        """fn(*carry, u, temperature) -> (*carry after, ids): one id per uniform draw in u."""
        u = pt.vector("u", dtype=self._dtype)  # (L,) uniform draws, one per generated character
        temperature = pt.scalar("temperature", dtype=self._dtype)
        names = list(self.params)
        if self.context is None:
            carry = [pt.vector("logits", dtype=self._dtype),  # (V,) prediction for the next character
                     pt.tensor("states", dtype=self._dtype, shape=(self.config.state_size, 1, self.config.hidden))]

            def step(u_t, logits, states, *weights):
                p = dict(zip(names, weights, strict=True))
                c = self._draw(logits, u_t, temperature)
                top, new_states = model.run_layers(c[None, None], states, p, self.config)
                new_logits = model.output_logits(top[-1], p)[0]
                return pt.specify_shape(new_logits, logits.type.shape), pt.specify_shape(new_states, states.type.shape), c
        else:
            carry = [pt.vector("window", dtype="int32"),  # (T,) the last context characters
                     pt.vector("mask", dtype=self._dtype)]  # (T,) 1 where the window holds a character

            def step(u_t, window, mask, *weights):
                p = dict(zip(names, weights, strict=True))
                top, _ = model.run_layers(window[:, None], self._zeros(1), p, self.config, mask=mask[:, None])
                c = self._draw(model.output_logits(top[-1], p)[0], u_t, temperature)
                return pt.concatenate([window[1:], c[None]]), pt.concatenate([mask[1:], pt.ones((1,), self._dtype)]), c

        *carried, ids = pytensor.scan(step, sequences=[u], outputs_info=[*carry, None],
                                      non_sequences=[self.params[name] for name in names],
                                      return_updates=False, strict=True)
        return compile_function([*carry, u, temperature], [*(c[-1] for c in carried), ids], backend=self.backend)
