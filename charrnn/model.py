"""The networks as PyTensor graphs: configuration, parameters, the layer loops, the loss.

Pure graph code: no I/O and no printing. Row-vector convention throughout: a batch of hidden
states is (B, H), a sequence of them (T, B, H), and a layer computes x·W_x + h·W_h. Each cell's
equations live in cells.py; the functions here drive any of them. Gate blocks sit side by side in
the columns of W_x, W_h, b_x and b_h in PyTorch's order (LSTM: i, f, g, o; GRU: r, z, n), so W_x
is PyTorch's weight_ih transposed and b_x its bias_ih.
"""
from dataclasses import dataclass

import numpy as np
import pytensor
import pytensor.tensor as pt
from pytensor.gradient import zero_grad

import charrnn.backend  # noqa: F401  sets floatX to float32 before any graph is built
from charrnn import cells
from charrnn.precision import dot


@dataclass(frozen=True)
class ModelConfig:
    vocab_size: int  # distinct characters; the one-hot input and softmax output width
    cell: str = "gru"  # rnn (lesson 6), gru or lstm (cells.CELLS); gru won the 20-minute sweep (benchmarks/sweep.py)
    hidden: int = 256  # units per layer; lesson 6: n_hidden = 256
    layers: int = 2  # stacked recurrent layers (lesson 6: 1)
    activation: str = "relu"  # rnn only: relu (lesson 6) or tanh
    dropout: float = 0.1  # inverted dropout after each layer, in training only (the sweep: 0.1 beat 0)

    @property
    def state_size(self):
        """Number of (B, H) state tensors: h per layer, and c too for LSTM."""
        return self.layers * cells.CELLS[self.cell].states


def layer_names(layer):
    """Parameter names of one layer: W_x, b_x, W_h, b_h for the first (the lesson's), W_x.1, ... after."""
    suffix = f".{layer}" if layer else ""
    return tuple(name + suffix for name in ("W_x", "b_x", "W_h", "b_h"))


def param_shapes(config):
    """Every parameter's name and shape, in checkpoint order."""
    V, H, G = config.vocab_size, config.hidden, cells.CELLS[config.cell].gates * config.hidden
    shapes = {}
    for layer in range(config.layers):
        W_x, b_x, W_h, b_h = layer_names(layer)
        shapes.update({W_x: (V if layer == 0 else H, G), b_x: (G,), W_h: (H, G), b_h: (G,)})
    return {**shapes, "W_y": (H, V), "b_y": (V,)}


def init_params(config, seed=0, dtype="float32"):
    """Initial weights as numpy arrays keyed by name: each layer's and the output layer's as the cell
    initialises them (cells.py), other biases zero."""
    rng = np.random.default_rng(seed)
    cell = cells.cell(config)
    arrays = {name: np.zeros(shape) for name, shape in param_shapes(config).items()}
    for layer in range(config.layers):
        W_x, b_x, W_h, _ = layer_names(layer)
        cell.init(rng, arrays[W_x], arrays[W_h], arrays[b_x])
    cell.init_output(rng, seed, arrays["W_y"], arrays["b_y"])
    return {name: a.astype(dtype) for name, a in arrays.items()}


def shared_params(arrays):
    """Named shared variables for the arrays of `init_params` or a checkpoint."""
    return {name: pytensor.shared(a, name=name, shape=a.shape) for name, a in arrays.items()}


def input_projection(x, W_x, b_x):
    """x_t·W_x + b_x for one-hot x_t, computed as a row lookup: (T, B) ids -> (T, B, G)."""
    return W_x[x] + b_x


def input_term(cell, layer, inputs, p):
    """Layer `layer`'s input term for ids (layer 0) or the layer below's outputs, with b_h folded
    in where the cell allows, and the recurrent weights: (a_x, W_h, b_h)."""
    W_x, b_x, W_h, b_h = (p[name] for name in layer_names(layer))
    a_x = input_projection(inputs, W_x, b_x) if layer == 0 else cell.dot(inputs, W_x) + b_x
    return (a_x + b_h, W_h, None) if cell.folds_bias else (a_x, W_h, b_h)


def step_layers(x_t, states, p, config, precision="float32"):
    """One time step of every layer for (B,) ids from (S, B, H) states, as plain graph (no scan):
    the body of the generator's scan. Returns the top layer's (B, H) output and the new states.
    precision: of the matrix products, float32 or bfloat16 (charrnn/precision.py)."""
    cell = cells.cell(config, precision)
    h, new = x_t, []
    for layer in range(config.layers):
        a_x, W_h, b_h = input_term(cell, layer, h, p)
        out, _ = cell.step(a_x, [states[layer * cell.states + i] for i in range(cell.states)], W_h, b_h)
        new.extend(out)
        h = out[0]
    return h, pt.stack(new)


def run_layer(cell, a_x, states0, W_h, b_h, mask=None, tape=False, unroll=1):
    """Scan one layer over its (T, B, G) input term from a list of (B, H) states.

    Returns (outs, saved): the (T, B, H) sequence of each state (h first), and with tape=True the
    cell's saved tensors by name (gate activations: what the backward pass and explain read).
    mask: optional (T, B) 0/1; where 0 the state stays at zero, so a right-aligned shorter sequence
    gives the states it would give alone.
    unroll: time steps per scan iteration, a divisor of T (see `blocks`); the result is the same.
    """
    n = len(states0)
    recurrent = [W_h] if b_h is None else [W_h, b_h]

    def step(a_block, *rest):  # (u, B, G) input terms; the carried (u, B, H) blocks end in the state
        m_block, rest = (rest[0], rest[1:]) if mask is not None else (None, rest)
        blocks_tm1, weights = rest[:n], rest[n:]
        states, rows = [b[-1] for b in blocks_tm1], []
        for j in range(unroll):
            new, saved = cell.step(a_block[j], states, weights[0], weights[1] if len(weights) > 1 else None)
            if m_block is not None:  # masked steps hold the state at zero (left padding of a window)
                new = [m_block[j][:, None] * s for s in new]
            states = [pt.specify_shape(s, old.type.shape) for s, old in zip(new, states0, strict=True)]
            rows.append(states + (saved if tape else []))
        return [pt.stack(column) for column in zip(*rows, strict=True)]

    T = a_x.type.shape[0]
    sequences = [blocks(a_x, unroll)] + ([] if mask is None else [blocks(mask, unroll)])
    first = [pt.stack([s] * unroll) for s in states0]  # only the last row is read
    outs = pytensor.scan(step, sequences=sequences, outputs_info=[*first, *([None] * len(cell.saved) if tape else [])],
                         non_sequences=recurrent, n_steps=iterations(T, unroll), return_updates=False, strict=True)
    outs = [unblock(o, T) for o in (outs if isinstance(outs, (list, tuple)) else [outs])]
    states = [pt.specify_shape(o, (T, *s.type.shape)) for o, s in zip(outs[:n], states0, strict=True)]  # static (JAX)
    return states, dict(zip(cell.saved, outs[n:])) if tape else {}


def blocks(seq, unroll):
    """(T, ...) -> (T / unroll, unroll, ...): a scan over the blocks runs `unroll` steps per
    iteration. XLA runs a scan as a while loop, which on a GPU costs kernel launches (and usually
    a read of the loop condition) per iteration; on the development CPU the cost is per operation,
    not per iteration, and unrolling gained nothing (benchmarks/overhead.py)."""
    T = seq.type.shape[0]
    if T is not None and T % unroll:
        raise ValueError(f"unroll {unroll} does not divide the {T} time steps")
    return seq.reshape([T // unroll if T is not None else seq.shape[0] // unroll, unroll, *_dims(seq, 1)])


def iterations(T, unroll):
    """Scan's n_steps for T steps (None where T is not static). Given, scan does not infer it from
    the sequences' shapes, which walks every graph above them (seconds for an unrolled layer)."""
    return None if T is None else T // unroll


def unblock(seq, T):
    """(T / unroll, unroll, ...) -> (T, ...), T static where known (None: taken from `seq`)."""
    return seq.reshape([T if T is not None else seq.shape[0] * seq.shape[1], *_dims(seq, 2)])


def _dims(seq, start):
    """seq's dimensions from `start` on: static where known, else symbolic (so shapes stay static for JAX)."""
    return [d if d is not None else seq.shape[i] for i, d in enumerate(seq.type.shape) if i >= start]


def unroll_for(T, most):
    """The largest divisor of T not above `most`: the unroll factor for T steps."""
    return max(u for u in range(1, min(T, most) + 1) if T % u == 0)


def run_layers(x, states0, p, config, mask=None, keep=None, tape=False, precision="float32", unroll=1):
    """Run all layers over (T, B) ids from (S, B, H) states.

    keep: optional (layers, T, B, H) dropout multipliers (0 or 1/(1-p)) applied to each layer's
    output; mask: see run_layer. Returns the top layer's (T, B, H) outputs (after dropout), the
    (S, B, H) final states, and per layer a tape: its `inputs`, `states0` and `outs` (lists of
    states), `hs` and `h_prev` (the (T, B, H) state each step started from) and, with tape=True,
    the cell's saved activations ("gates", "hn" or "tanh_c"). precision: of the matrix products,
    float32 or bfloat16 (charrnn/precision.py). unroll: time steps per scan iteration (see run_layer).
    """
    cell = cells.cell(config, precision)
    inputs, finals, tapes = x, [], []
    for layer in range(config.layers):
        a_x, W_h, b_h = input_term(cell, layer, inputs, p)
        first = [states0[layer * cell.states + i] for i in range(cell.states)]
        outs, saved = run_layer(cell, a_x, first, W_h, b_h, mask, tape, unroll)
        finals.extend(o[-1] for o in outs)
        h_prev = pt.concatenate([first[0][None], outs[0][:-1]], axis=0)
        tapes.append({"inputs": inputs, "states0": first, "outs": outs, "hs": outs[0], "h_prev": h_prev, **saved})
        inputs = outs[0] if keep is None else outs[0] * keep[layer]
    return inputs, pt.stack(finals), tapes


def positions(v, by_stream=False):
    """(T, B, ...) -> (T*B, ...), one row per position: time by time, which one device computes
    fastest, or stream by stream. A batch split over devices (devices.py) needs the streams' rows
    together: in time-major rows every device's streams are interleaved, and XLA would gather the
    whole batch onto every device to make them."""
    return (v.swapaxes(0, 1) if by_stream else v).reshape((-1, *v.type.shape[2:]))


def output_logits(hs, p, precision="float32"):
    """(..., H) hidden states -> (N, V) logits h·W_y + b_y, one row per position; the product in `precision`."""
    return dot(hs.reshape((-1, hs.shape[-1])), p["W_y"], precision) + p["b_y"]


def log_softmax(logits):
    """Row-wise log-softmax, z - max - log(sum(exp(z - max))), stable in float32.

    Written out rather than pytensor's LogSoftmax, which the C backend runs in Python and which
    cost a quarter of each lesson-6 step. The max only shifts the rows: no gradient flows through it.
    """
    shift = zero_grad(pt.max(logits, axis=-1, keepdims=True))
    return logits - shift - pt.log(pt.exp(logits - shift).sum(axis=-1, keepdims=True))


def token_nll(logits, targets):
    """(N,) negative log-likelihoods (nats) of integer targets under softmax(logits).

    log-softmax with integer targets rather than sum(onehot * log(softmax)): the latter turns
    NaN in float32 once a non-target probability underflows to 0.
    """
    y = targets.reshape((-1,))
    return -log_softmax(logits)[pt.arange(y.shape[0]), y]


def sequence_loss(logits, targets):
    """Categorical cross-entropy summed over the sequence (nats): the lesson's loss."""
    return token_nll(logits, targets).sum()
