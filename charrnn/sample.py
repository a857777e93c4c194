"""Predictions from a trained network: a compiled sampler and the per-position next-character view.

A network trained with its state carried from chunk to chunk reads the seed and keeps its state
while it generates. A network trained from a zero state on every chunk of `seq_len` characters
(the lesson's way) predicts from the last `seq_len` characters read from a zero state: the
situation it learnt in. Either way the seed and the continuation go through one compiled scan,
PIECE characters per call, with the random draws passed in, so text can be shown as it comes and
the first n characters are the same whatever the length asked for. The draw can be truncated to
the k most likely characters and to the smallest set whose probability reaches p (k and p are
inputs of the compiled scan, so changing them never recompiles; plain sampling runs a scan
without the sort).

Beam search (charrnn/beam.py) runs W beams as one batch of W through a compiled step: `fork`
reads the seed once and copies its state W times, `extend` moves each beam to its parent's state
and reads one character, returning the (W, V) log-probabilities of the next.

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

    def generate(self, seed_ids, length, temperature=1.0, rng_seed=0, top_k=None, top_p=None):
        """`length` ids continuing `seed_ids`: sampled at `temperature` (from the `top_k` most likely
        ids and the smallest set reaching probability `top_p`), or argmax at each step when it is 0."""
        pieces = self.stream(seed_ids, length, temperature, rng_seed, top_k, top_p)
        return np.concatenate([np.zeros(0, np.int32), *pieces])

    def stream(self, seed_ids, length, temperature=1.0, rng_seed=0, top_k=None, top_p=None):
        """Yield the continuation in pieces as they are generated. The seed and the continuation
        run through one compiled scan, PIECE positions per call: the seed's characters are fed in,
        the rest drawn. The random draws are made up front, so a longer continuation starts with
        the same characters. top_k None (or >= V) and top_p None (or 1) draw from the whole distribution."""
        if length <= 0:
            return
        if self.context is not None:  # the window sees only the last `context` characters: skip the rest
            seed_ids = seed_ids[-self.context :]
        S = len(seed_ids)
        n = -(-(S + length) // PIECE) * PIECE
        forced = np.full(n, -1, dtype=np.int32)  # -1: draw this position
        forced[:S] = seed_ids
        u = np.zeros(n, dtype=self._dtype)
        u[S : S + length] = np.random.default_rng(rng_seed).random(length)
        V = self.config.vocab_size
        options = [np.asarray(temperature, dtype=self._dtype)]
        top_k, top_p = min(top_k or V, V), 1.0 if top_p is None else top_p  # None: no truncation
        truncate = top_k < V or top_p < 1
        if truncate:  # a generator of its own: the plain one pays nothing for the sort
            options += [np.asarray(top_k, dtype=np.int32), np.asarray(top_p, dtype=self._dtype)]
        generate = self._compiled("generate", (truncate,), lambda: self._compile_generate(truncate))
        carry = self._initial_carry()
        for start in range(0, S + length, PIECE):
            *carry, ids = generate(*carry, forced[start : start + PIECE], u[start : start + PIECE], *options)
            first, last = max(S - start, 0), min(S + length - start, PIECE)
            if first < last:
                yield np.asarray(ids)[first:last]

    def fork(self, seed_ids, width):
        """The start of `width` beams after the seed: (carry, (V,) log-probabilities of the next id).
        The carry holds `width` copies of the state read from the whole seed (carried state) or of
        the window of its last `context` ids."""
        if self.context is not None:
            window, mask = self._windows(seed_ids[-self.context :])
            carry = (np.repeat(window[:, -1:], width, axis=1), np.repeat(mask[:, -1:], width, axis=1))
            return carry, np.asarray(self._beam_step(width)(*carry))[0]
        read = self._compiled("read", (), self._compile_read)
        n = -(-len(seed_ids) // PIECE) * PIECE
        ids, mask = np.zeros((n, 1), np.int32), np.zeros((n, 1), self._dtype)  # left padding: held at zero
        ids[n - len(seed_ids) :, 0], mask[n - len(seed_ids) :] = seed_ids, 1
        states = self._initial_carry()[1]
        for start in range(0, n, PIECE):
            states, logits = read(states, ids[start : start + PIECE], mask[start : start + PIECE])
        logits = np.asarray(logits, dtype=np.float64)
        log_probs = logits - logits.max() - np.log(np.exp(logits - logits.max()).sum())
        return np.repeat(np.asarray(states), width, axis=1), log_probs

    def extend(self, carry, parents, ids):
        """Beam j continues beam parents[j] with ids[j]: (carry, (W, V) log-probabilities of the next id)."""
        parents, ids = np.asarray(parents, np.int32), np.asarray(ids, np.int32)
        step = self._beam_step(len(parents))
        if self.context is None:
            states, log_probs = step(carry, parents, ids)
            return states, np.asarray(log_probs)
        window, mask = carry
        carry = (np.concatenate([window[1:, parents], ids[None]]),
                 np.concatenate([mask[1:, parents], np.ones((1, len(ids)), self._dtype)]))
        return carry, np.asarray(step(*carry))

    def _beam_step(self, width):
        return self._compiled("beam", (width,), lambda: self._compile_beam_step(width))

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

    def _compile_read(self):
        """fn(states, ids, mask) -> (states after, logits of the next id): PIECE seed ids read into
        (S, 1, H) states; mask 0 holds the state at zero (left padding before the seed)."""
        states = pt.tensor("states", dtype=self._dtype, shape=(self.config.state_size, 1, self.config.hidden))
        ids = pt.tensor("ids", dtype="int32", shape=(PIECE, 1))
        mask = pt.tensor("mask", dtype=self._dtype, shape=(PIECE, 1))
        top, finals, _ = model.run_layers(ids, states, self.params, self.config, mask=mask)
        logits = model.output_logits(top[-1], self.params)[0]
        return compile_function([states, ids, mask], [finals, logits], backend=self.backend)

    def _compile_beam_step(self, W):
        """Carried state: fn(states, parents, ids) -> (states, log_probs), beam j reading ids[j]
        from beam parents[j]'s (S, W, H) state. Windows: fn(window, mask) -> log_probs, each of the
        W (T, W) windows read from a zero state. log_probs: (W, V) for the next id."""
        p, config = self.params, self.config
        if self.context is None:
            states = pt.tensor("states", dtype=self._dtype, shape=(config.state_size, W, config.hidden))
            parents, ids = pt.tensor("parents", dtype="int32", shape=(W,)), pt.tensor("ids", dtype="int32", shape=(W,))
            top, new_states = model.step_layers(ids, states[:, parents], p, config)  # (W, H), (S, W, H)
            log_probs = model.log_softmax(model.output_logits(top, p))
            return compile_function([states, parents, ids], [new_states, log_probs], backend=self.backend)
        window = pt.tensor("window", dtype="int32", shape=(self.context, W))
        mask = pt.tensor("mask", dtype=self._dtype, shape=(self.context, W))
        top = model.run_layers(window, self._zeros(W), p, config, mask=mask)[0][-1]
        return compile_function([window, mask], model.log_softmax(model.output_logits(top, p)), backend=self.backend)

    def _draw(self, logits, u_t, temperature, top_k=None, top_p=None):
        """Inverse-CDF draw (in id order) from softmax(logits / temperature), or the argmax when
        temperature is 0. With `top_k` and `top_p` (symbolic scalars) the draw is restricted to the
        top_k most likely ids and to the smallest set of most likely ids whose probability reaches
        top_p, renormalised; ties at a cut go to the lower id."""
        V = self.config.vocab_size
        probs = softmax(logits / pt.maximum(temperature, 1e-6))  # (V,)
        if top_k is None:
            drawn = pt.minimum(pt.sum(pt.cumsum(probs) < u_t), V - 1)
            return pt.switch(pt.gt(temperature, 0), drawn, pt.argmax(logits)).astype("int32")
        order = pt.argsort(-probs, stable=True)  # most likely first
        ranked = probs[order]
        before = pt.cumsum(ranked) - ranked  # probability of the ids ranked above each
        nucleus = pt.switch(pt.ge(top_p, 1), V, pt.sum(pt.lt(before, top_p)))
        allowed = pt.clip(pt.minimum(top_k, nucleus), 1, V)  # how many of the most likely ids may be drawn
        rank = pt.set_subtensor(pt.zeros((V,), "int32")[order], pt.arange(V, dtype="int32"))
        kept = pt.lt(rank, allowed)
        cdf = pt.cumsum(pt.switch(kept, probs, 0))
        # the first allowed id whose cumulative probability reaches u of the allowed total
        drawn = pt.argmax(pt.and_(kept, pt.ge(cdf, u_t * cdf[-1])).astype("int8"))
        return pt.switch(pt.gt(temperature, 0), drawn, pt.argmax(logits)).astype("int32")

    def _compile_generate(self, truncate):
        """fn(*carry, forced, u, temperature[, top_k, top_p]) -> (*carry after, ids): at each position
        the id `forced` gives, or where it is -1 one drawn with its uniform draw in u (top_k and
        top_p with `truncate`)."""
        forced = pt.tensor("forced", dtype="int32", shape=(PIECE,))
        u = pt.tensor("u", dtype=self._dtype, shape=(PIECE,))
        temperature = pt.scalar("temperature", dtype=self._dtype)
        top_k = pt.scalar("top_k", dtype="int32") if truncate else None
        top_p = pt.scalar("top_p", dtype=self._dtype) if truncate else None
        V, T = self.config.vocab_size, self.context

        def choose(f_t, logits, u_t):
            drawn = self._draw(logits, u_t, temperature, top_k, top_p)
            return pt.switch(pt.ge(f_t, 0), f_t, drawn).astype("int32")

        if self.context is None:
            carry = [pt.tensor("logits", dtype=self._dtype, shape=(V,)),  # the prediction for the next character
                     pt.tensor("states", dtype=self._dtype, shape=(self.config.state_size, 1, self.config.hidden))]

            def step(f_t, u_t, logits, states, *weights):
                p = dict(zip(self.params, weights, strict=True))
                c = choose(f_t, logits, u_t)
                top, new_states = model.step_layers(c[None], states, p, self.config)
                new_logits = model.output_logits(top, p)[0]
                return pt.specify_shape(new_logits, (V,)), pt.specify_shape(new_states, states.type.shape), c
        else:
            carry = [pt.tensor("window", dtype="int32", shape=(T,)),  # the last context characters
                     pt.tensor("mask", dtype=self._dtype, shape=(T,))]  # 1 where the window holds a character

            def step(f_t, u_t, window, mask, *weights):
                p = dict(zip(self.params, weights, strict=True))
                top, _, _ = model.run_layers(window[:, None], self._zeros(1), p, self.config, mask=mask[:, None])
                c = choose(f_t, model.output_logits(top[-1], p)[0], u_t)
                return pt.concatenate([window[1:], c[None]]), pt.concatenate([mask[1:], pt.ones((1,), self._dtype)]), c

        *carried, ids = pytensor.scan(step, sequences=[forced, u], outputs_info=[*carry, None],
                                      non_sequences=list(self.params.values()),
                                      return_updates=False, strict=True)
        inputs = [*carry, forced, u, temperature, *([top_k, top_p] if truncate else [])]
        return compile_function(inputs, [*(c[-1] for c in carried), ids], backend=self.backend)


def until_stop(pieces, stops, drop=False):
    """Yield the text of `pieces` (strings) as it comes, ending as soon as it ends with one of
    `stops`: the stop text is the last thing yielded, or with `drop` is not yielded at all (then
    up to max(len(stop)) - 1 characters that could begin a stop wait until they are known not to).
    A stop spread over several pieces is found."""
    keep = max(map(len, stops), default=1) - 1  # characters of context a stop can straddle
    recent, pending = "", 0  # the last `keep` characters seen; how many of them wait to be yielded
    for piece in pieces:
        seen = recent + piece
        sent = len(recent) - pending  # characters of `seen` already yielded
        end = min((seen.find(s) + len(s) for s in stops if s in seen), default=None)
        if end is not None:
            stop = max((s for s in stops if s in seen and seen.find(s) + len(s) == end), key=len)
            yield seen[sent : end - len(stop) if drop else end]
            return
        pending = _stop_prefix(seen, stops) if drop else 0
        yield seen[sent : len(seen) - pending]
        recent = seen[max(len(seen) - keep, 0) :]
    yield recent[len(recent) - pending :]


def _stop_prefix(text, stops):
    """The length of the longest end of `text` that begins one of `stops` (shorter than it)."""
    return max((n for stop in stops for n in range(1, len(stop)) if text.endswith(stop[:n])), default=0)
