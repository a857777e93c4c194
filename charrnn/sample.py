"""Predictions from a trained network: a compiled sampler and the per-position next-character view.

A network trained with its state carried from chunk to chunk reads the seed and keeps its state
while it generates. A network trained from a zero state on every chunk of `seq_len` characters
(the lesson's way) predicts from the last `seq_len` characters read from a zero state: the
situation it learnt in. Either way generation is one compiled scan over the output length, with
the random draws passed in, so the same seed gives the same text on every backend.
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
        self._generate = None
        self._next = None

    def generate(self, seed_ids, length, temperature=1.0, rng_seed=0):
        """`length` ids continuing `seed_ids`: sampled at `temperature`, or argmax at each step when it is 0."""
        if self._generate is None:
            self._generate = self._compile_generate()
        u = np.random.default_rng(rng_seed).random(length).astype(self._dtype)
        t = np.asarray(temperature, dtype=self._dtype)
        if self.context is None:
            return self._generate(np.asarray(seed_ids, dtype=np.int32)[:, None], u, t)
        window, mask = self._windows(seed_ids)
        return self._generate(window[:, -1], mask[:, -1], u, t)

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

    def _compile_generate(self):
        u = pt.vector("u", dtype=self._dtype)  # (L,) uniform draws, one per generated character
        temperature = pt.scalar("temperature", dtype=self._dtype)
        names = list(self.params)
        weights = [self.params[name] for name in names]
        if self.context is None:
            seed = pt.matrix("seed", dtype="int32")  # (S, 1)
            top, states = model.run_layers(seed, self._zeros(1), self.params, self.config)
            logits0 = model.output_logits(top[-1], self.params)[0]  # (V,) after the seed

            def step(u_t, logits, states, *weights):
                p = dict(zip(names, weights, strict=True))
                c = self._draw(logits, u_t, temperature)
                top, new_states = model.run_layers(c[None, None], states, p, self.config)
                new_logits = model.output_logits(top[-1], p)[0]
                return pt.specify_shape(new_logits, logits.type.shape), pt.specify_shape(new_states, states.type.shape), c

            outputs_info, inputs = [logits0, states, None], [seed]
        else:
            window0 = pt.vector("window", dtype="int32")  # (T,) last context characters of the seed
            mask0 = pt.vector("mask", dtype=self._dtype)  # (T,) 1 where window0 holds a character

            def step(u_t, window, mask, *weights):
                p = dict(zip(names, weights, strict=True))
                top, _ = model.run_layers(window[:, None], self._zeros(1), p, self.config, mask=mask[:, None])
                c = self._draw(model.output_logits(top[-1], p)[0], u_t, temperature)
                return pt.concatenate([window[1:], c[None]]), pt.concatenate([mask[1:], pt.ones((1,), self._dtype)]), c

            outputs_info, inputs = [window0, mask0, None], [window0, mask0]
        *_, ids = pytensor.scan(step, sequences=[u], outputs_info=outputs_info, non_sequences=weights,
                                return_updates=False, strict=True)
        return compile_function([*inputs, u, temperature], ids, backend=self.backend)
