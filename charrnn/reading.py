"""Reading a text as `predict` reads a seed: the one reading `explain` and `eval` share.

A network trained with its state carried reads the whole text from a zero state, the state carried
from each character to the next; one trained from a zero state on every chunk (the lesson's way)
predicts each character from the last `seq_len` characters, read from a zero state. `explain`
reads one text keeping each layer's activations; `eval` keeps only the log-probabilities and may
read a long text as several streams side by side, each read the first way.

One compiled function per shape returns the log-probabilities of the next character and, per
layer, what the cell's tape keeps (model.run_layers(tape=True)): h, tanh(c) for the LSTM, and the
gate activations.
"""
import numpy as np
import pytensor.tensor as pt

from charrnn import cells, model
from charrnn.backend import DEFAULT_BACKEND, cached_function, compile_function
from charrnn.sample import bucket, windows

PIECE = 4096  # carried state: positions per compiled call, over all streams; a longer text runs in pieces
WINDOWS = 512  # reset state: windows per compiled call (bounds the tape's memory: T x 512 x G·H)
SHOWN = ("tanh_c", "gates")  # the tape's tensors kept besides h (not GRU's recurrent term hn)


class Reader:
    """Compiled functions that read ids as `predict` does; with `activations`, keeping each layer's;
    the matrix products in `precision` (precision.py)."""

    def __init__(self, params, config, context=None, backend=DEFAULT_BACKEND, cache=False, activations=True,
                 precision="float32"):
        self.params, self.config, self.context, self.backend, self.cache = params, config, context, backend, cache
        self.precision = precision
        self.cell = cells.cell(config)
        # per layer, in output order (none without activations: the log-probabilities only)
        self.names = ["h", *(name for name in self.cell.saved if name in SHOWN)] if activations else []
        self._fns = {}

    @property
    def _dtype(self):
        return self.params["W_y"].dtype

    def read(self, ids):
        """(logp, layers) for (M,) ids: logp (M, V) the log-probabilities of the character after each
        position, having read it; layers a dict per layer of (M, ·) arrays named as in self.names."""
        pieces = [outs for _, outs in self.pieces(np.asarray(ids)[:, None])]
        logp, *rest = (np.concatenate([p[i][:, 0] for p in pieces]) for i in range(len(pieces[0])))
        L = len(self.names)
        return logp, [dict(zip(self.names, rest[l * L : (l + 1) * L])) for l in range(self.config.layers)]

    def pieces(self, streams):
        """Read (N, B) ids, B streams side by side (B = 1 for a reset-state network, whose windows are
        batched already); yield (start, [logp (n, B, V), then per layer each of self.names (n, B, ·)])
        for the n positions from `start` on, piece by piece, in order."""
        return self._windowed(streams[:, 0]) if self.context else self._carried(streams)

    def _carried(self, streams):
        """Each stream from a zero state, the state carried from piece to piece."""
        N, B = streams.shape
        size = max(PIECE // B, 1)  # PIECE positions a call in all: B streams of PIECE / B
        size = size if N > size else bucket(N)
        fn = self._compiled(size, B)
        states = np.zeros((self.config.state_size, B, self.config.hidden), dtype=self._dtype)
        for s in range(0, N, size):
            piece = np.zeros((size, B), dtype=np.int32)  # right padding: read after every real position
            piece[: min(size, N - s)] = streams[s : s + size]
            *outs, states = fn(piece, states)
            yield s, [np.asarray(out)[: N - s] for out in outs]

    def _windowed(self, ids):
        """Each position from the window of the last `context` ids ending there, WINDOWS windows a call."""
        N, T = len(ids), self.context
        size = WINDOWS if N > WINDOWS else bucket(N)
        fn = self._compiled(size, 1)
        padded = np.zeros(-(-N // size) * size, dtype=ids.dtype)  # right padding: never in a real window
        padded[:N] = ids
        for s in range(0, N, size):
            window, mask = windows(padded[max(0, s - T + 1) : s + size], T, self._dtype)
            outs = fn(window[:, -size:], mask[:, -size:])
            yield s, [np.asarray(out)[: N - s, None] for out in outs]

    def _compiled(self, size, batch):
        if (size, batch) not in self._fns:
            build = ((lambda: self._compile_windows(size)) if self.context
                     else (lambda: self._compile_carried(size, batch)))
            if self.cache:
                shapes = tuple((name, p.type.shape, p.dtype) for name, p in self.params.items())
                # what determines the graph; cached_function adds a hash of this file's source
                key = ("read", size, batch, tuple(self.names), self.config, self.context, self.precision, shapes)
                self._fns[size, batch] = cached_function(key, build, self.params, self.backend)
            else:
                self._fns[size, batch] = build()
        return self._fns[size, batch]

    def _outputs(self, top, tapes, pick):
        """[logp, then per layer each of self.names] with `pick` taking each (T, B, k) tensor to what is returned."""
        logp = model.log_softmax(model.output_logits(top, self.params, self.precision))  # (N, V), one row per position
        outs = [logp.reshape((*top.type.shape[:-1], -1))]  # (T, B, V), or (N, V) for each window's last step
        for tape in tapes:
            outs.extend(pick(tape["hs" if name == "h" else name]) for name in self.names)
        return outs

    def _compile_carried(self, size, batch):
        """fn(ids (size, B), states (S, B, H)) -> (logp (size, B, V), *activations (size, B, ·), final states)."""
        ids = pt.tensor("ids", dtype="int32", shape=(size, batch))
        states = pt.tensor("states", dtype=self._dtype, shape=(self.config.state_size, batch, self.config.hidden))
        top, finals, tapes = model.run_layers(ids, states, self.params, self.config, tape=len(self.names) > 1,
                                              precision=self.precision)
        return compile_function([ids, states], [*self._outputs(top, tapes, lambda x: x), finals], backend=self.backend)

    def _compile_windows(self, size):
        """fn(window (T, size), mask (T, size)) -> (logp (size, V), *activations (size, ·)), each at its
        window's last step."""
        window = pt.tensor("window", dtype="int32", shape=(self.context, size))
        mask = pt.tensor("mask", dtype=self._dtype, shape=(self.context, size))
        states = pt.zeros((self.config.state_size, size, self.config.hidden), dtype=self._dtype)
        top, _, tapes = model.run_layers(window, states, self.params, self.config, mask=mask,
                                         tape=len(self.names) > 1, precision=self.precision)
        return compile_function([window, mask], self._outputs(top[-1], tapes, lambda x: x[-1]), backend=self.backend)
