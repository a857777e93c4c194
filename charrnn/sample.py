"""Predictions from a trained network: a compiled sampler and the per-position next-character view.

The lesson's network is trained from a zero state on sequences of `seq_len` characters, so it
predicts from a context of the last `context` characters read from a zero state: the situation it
was trained in. Generation runs as one compiled scan over the output length.
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

    def __init__(self, params, context, backend=DEFAULT_BACKEND):
        self.params = params
        self.context = context  # characters of context per prediction: the training seq_len
        self.backend = backend
        self._generate = None
        self._next = None

    def generate(self, seed_ids, length, temperature=1.0, rng_seed=0):
        """`length` ids continuing `seed_ids`: sampled at `temperature`, or argmax at each step when it is 0."""
        if self._generate is None:
            self._generate = self._compile_generate()
        window, mask = self._windows(seed_ids)
        u = np.random.default_rng(rng_seed).random(length).astype(self._dtype)
        return self._generate(window[:, -1], mask[:, -1], u, np.asarray(temperature, dtype=self._dtype))

    def next_chars(self, seed_ids):
        """For each seed position, the id rated most likely to come next and its probability."""
        if self._next is None:
            self._next = self._compile_next()
        probs = self._next(*self._windows(seed_ids))  # (S, V)
        best = probs.argmax(axis=1)
        return best, probs[np.arange(len(best)), best]

    @property
    def _dtype(self):
        return self.params["W_h"].dtype

    def _windows(self, seed_ids):
        """(T, S) right-aligned context windows ending at each seed position, and their 0/1 masks."""
        T, S = self.context, len(seed_ids)
        padded = np.concatenate([np.zeros(T - 1, dtype=np.int32), np.asarray(seed_ids, dtype=np.int32)])
        starts = np.arange(S)[None, :] + np.arange(T)[:, None]  # (T, S) index into padded
        mask = (starts >= T - 1).astype(self._dtype)
        return np.ascontiguousarray(padded[starts]), mask

    def _last_state(self, window, mask, p):
        """(T, B) windows and masks -> (B, H) state after reading each window from zero."""
        h0 = pt.zeros((window.shape[1], p["W_h"].shape[0]), dtype=self._dtype)
        return model.hidden_states(window, h0, p, mask)[-1]

    def _compile_next(self):
        window = pt.matrix("window", dtype="int32")  # (T, S)
        mask = pt.matrix("mask", dtype=self._dtype)  # (T, S)
        probs = softmax(model.output_logits(self._last_state(window, mask, self.params), self.params), axis=-1)
        return compile_function([window, mask], probs, backend=self.backend)

    def _compile_generate(self):
        window0 = pt.vector("window", dtype="int32")  # (T,) last context characters of the seed
        mask0 = pt.vector("mask", dtype=self._dtype)  # (T,) 1 where window0 holds a character
        u = pt.vector("u", dtype=self._dtype)  # (L,) uniform draws, one per generated character
        temperature = pt.scalar("temperature", dtype=self._dtype)
        names = model.PARAM_NAMES

        def step(u_t, window, mask, *weights):
            p = dict(zip(names, weights, strict=True))
            logits = model.output_logits(self._last_state(window[:, None], mask[:, None], p), p)[0]  # (V,)
            probs = softmax(logits / pt.maximum(temperature, 1e-6))
            drawn = pt.minimum(pt.sum(pt.cumsum(probs) < u_t), probs.shape[0] - 1)  # inverse-CDF draw
            c = pt.switch(pt.gt(temperature, 0), drawn, pt.argmax(logits)).astype("int32")
            return pt.concatenate([window[1:], c[None]]), pt.concatenate([mask[1:], pt.ones((1,), self._dtype)]), c

        _, _, ids = pytensor.scan(
            step,
            sequences=[u],
            outputs_info=[window0, mask0, None],
            non_sequences=[self.params[name] for name in names],
            return_updates=False,
            strict=True,
        )
        return compile_function([window0, mask0, u, temperature], ids, backend=self.backend)
