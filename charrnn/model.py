"""The networks as PyTensor graphs: configuration, parameters, the scan step of each cell, the loss.

Pure graph code: no I/O and no printing. Row-vector convention throughout: a batch of hidden
states is (B, H), a sequence of them (T, B, H), and a layer computes x·W_x + h·W_h. Gate blocks
sit side by side in the columns of W_x, W_h, b_x and b_h in PyTorch's order (LSTM: i, f, g, o;
GRU: r, z, n), so W_x is PyTorch's weight_ih transposed and b_x its bias_ih.
"""
from dataclasses import dataclass

import numpy as np
import pytensor
import pytensor.tensor as pt
from pytensor.gradient import zero_grad

import charrnn.backend  # noqa: F401  sets floatX to float32 before any graph is built

GATES = {"rnn": 1, "gru": 3, "lstm": 4}  # column blocks per cell


@dataclass(frozen=True)
class ModelConfig:
    vocab_size: int  # distinct characters; the one-hot input and softmax output width
    cell: str = "gru"  # rnn (lesson 6), gru or lstm; gru won the 20-minute sweep (benchmarks/sweep.py)
    hidden: int = 256  # units per layer; lesson 6: n_hidden = 256
    layers: int = 2  # stacked recurrent layers (lesson 6: 1)
    activation: str = "relu"  # rnn only: relu (lesson 6) or tanh
    dropout: float = 0.1  # inverted dropout after each layer, in training only (the sweep: 0.1 beat 0)

    @property
    def state_size(self):
        """Number of (B, H) state tensors: h per layer, and c too for LSTM."""
        return self.layers * (2 if self.cell == "lstm" else 1)


def layer_names(layer):
    """Parameter names of one layer: W_x, b_x, W_h, b_h for the first (the lesson's), W_x.1, ... after."""
    suffix = f".{layer}" if layer else ""
    return tuple(name + suffix for name in ("W_x", "b_x", "W_h", "b_h"))


def param_shapes(config):
    """Every parameter's name and shape, in checkpoint order."""
    V, H, G = config.vocab_size, config.hidden, GATES[config.cell] * config.hidden
    shapes = {}
    for layer in range(config.layers):
        W_x, b_x, W_h, b_h = layer_names(layer)
        shapes.update({W_x: (V if layer == 0 else H, G), b_x: (G,), W_h: (H, G), b_h: (G,)})
    return {**shapes, "W_y": (H, V), "b_y": (V,)}


def init_params(config, seed=0, dtype="float32"):
    """Initial weights as numpy arrays keyed by name.

    rnn: the lesson's W_h = identity and normal(0, sqrt(2/rows)) input weights. gru and lstm:
    PyTorch's uniform(-1/sqrt(H), 1/sqrt(H)); the LSTM forget-gate bias starts at 1 so the cell
    remembers by default. W_y is normal(0, sqrt(2/H)) and other biases zero for every cell.
    """
    rng = np.random.default_rng(seed)
    H, k = config.hidden, 1 / np.sqrt(config.hidden)
    arrays = {name: np.zeros(shape) for name, shape in param_shapes(config).items()}
    for layer in range(config.layers):
        W_x, b_x, W_h, _ = layer_names(layer)
        if config.cell == "rnn":
            rows = arrays[W_x].shape[0]
            arrays[W_x] = rng.normal(0.0, np.sqrt(2.0 / rows), size=arrays[W_x].shape)
            arrays[W_h] = np.eye(H)  # identity init keeps gradients from vanishing early (Le et al., 2015)
        else:
            arrays[W_x] = rng.uniform(-k, k, size=arrays[W_x].shape)
            arrays[W_h] = rng.uniform(-k, k, size=arrays[W_h].shape)
        if config.cell == "lstm":
            arrays[b_x][H : 2 * H] = 1.0  # forget gate
    arrays["W_y"] = rng.normal(0.0, np.sqrt(2.0 / H), size=(H, config.vocab_size))
    return {name: a.astype(dtype) for name, a in arrays.items()}


def shared_params(arrays):
    """Named shared variables for the arrays of `init_params` or a checkpoint."""
    return {name: pytensor.shared(a, name=name, shape=a.shape) for name, a in arrays.items()}


def input_projection(x, W_x, b_x):
    """x_t·W_x + b_x for one-hot x_t, computed as a row lookup: (T, B) ids -> (T, B, G)."""
    return W_x[x] + b_x


def rnn_step(xw_t, h_tm1, W_h, b_h, activation="relu"):
    """h_t = act(x_t·W_x + b_x + h_{t-1}·W_h + b_h), with x_t·W_x + b_x already computed."""
    a = xw_t + pt.dot(h_tm1, W_h) + b_h
    return pt.maximum(a, 0) if activation == "relu" else pt.tanh(a)


def gru_step(xw_t, h_tm1, W_h, b_h):
    """PyTorch's GRU: r, z = sigmoid(...); n = tanh(x_n + r * (h·W_hn + b_hn)); h = (1 - z) n + z h."""
    H = h_tm1.shape[-1]
    hw = pt.dot(h_tm1, W_h) + b_h  # (B, 3H)
    r = pt.sigmoid(xw_t[:, :H] + hw[:, :H])
    z = pt.sigmoid(xw_t[:, H : 2 * H] + hw[:, H : 2 * H])
    n = pt.tanh(xw_t[:, 2 * H :] + r * hw[:, 2 * H :])
    return (1 - z) * n + z * h_tm1


def lstm_step(xw_t, h_tm1, c_tm1, W_h, b_h):
    """PyTorch's LSTM: i, f, o = sigmoid(...), g = tanh(...); c = f c + i g; h = o tanh(c)."""
    H = h_tm1.shape[-1]
    a = xw_t + pt.dot(h_tm1, W_h) + b_h  # (B, 4H), one product for all gates
    i, f = pt.sigmoid(a[:, :H]), pt.sigmoid(a[:, H : 2 * H])
    g, o = pt.tanh(a[:, 2 * H : 3 * H]), pt.sigmoid(a[:, 3 * H :])
    c = f * c_tm1 + i * g
    return o * pt.tanh(c), c


def cell_step(config, xw_t, states, W_h, b_h):
    """One step of one layer's cell: its new states as a list (h, or h and c)."""
    if config.cell == "lstm":
        return list(lstm_step(xw_t, *states, W_h, b_h))
    if config.cell == "gru":
        return [gru_step(xw_t, *states, W_h, b_h)]
    return [rnn_step(xw_t, *states, W_h, b_h, config.activation)]


def step_layers(x_t, states, p, config):
    """One time step of every layer for (B,) ids from (S, B, H) states, as plain graph (no scan):
    the body of the generator's scan. Returns the top layer's (B, H) output and the new states."""
    per_layer = config.state_size // config.layers
    h, new = None, []
    for layer in range(config.layers):
        W_x, b_x, W_h, b_h = (p[name] for name in layer_names(layer))
        xw = input_projection(x_t, W_x, b_x) if layer == 0 else pt.dot(h, W_x) + b_x
        out = cell_step(config, xw, [states[layer * per_layer + i] for i in range(per_layer)], W_h, b_h)
        new.extend(out)
        h = out[0]
    return h, pt.stack(new)


def _layer_step(config):
    """The scan step of one layer as f(xw_t, m_t, *states, W_h, b_h) -> new states (a list)."""
    def step(xw_t, m_t, *rest):
        *states, W_h, b_h = rest
        new = cell_step(config, xw_t, states, W_h, b_h)
        if m_t is not None:  # masked steps hold the state at zero (left padding of a window)
            new = [m_t[:, None] * s for s in new]
        return [pt.specify_shape(s, old.type.shape) for s, old in zip(new, states, strict=True)]

    return step


def run_layers(x, states0, p, config, mask=None, keep=None):
    """Run all layers over (T, B) ids from (S, B, H) states.

    mask: optional (T, B) 0/1; where 0 the state stays at zero, so a right-aligned shorter sequence
    gives the states it would give alone. keep: optional (layers, T, B, H) dropout multipliers
    (0 or 1/(1-p)) applied to each layer's output. Returns the top layer's (T, B, H) outputs and
    the (S, B, H) final states.
    """
    per_layer = config.state_size // config.layers
    step = _layer_step(config)
    inputs, finals = None, []
    for layer in range(config.layers):
        W_x, b_x, W_h, b_h = (p[name] for name in layer_names(layer))
        if layer == 0:
            xw = input_projection(x, W_x, b_x)  # (T, B, G)
        else:  # one (T*B, H) x (H, G) product for all time steps, outside the scan
            xw = pt.dot(inputs, W_x) + b_x
        sequences = [xw] if mask is None else [xw, mask]
        outs = pytensor.scan(
            (lambda xw_t, *rest: step(xw_t, None, *rest)) if mask is None else step,
            sequences=sequences,
            outputs_info=[states0[layer * per_layer + i] for i in range(per_layer)],
            non_sequences=[W_h, b_h],
            return_updates=False,
            strict=True,
        )
        outs = outs if isinstance(outs, (list, tuple)) else [outs]
        outs = [pt.specify_shape(o, (*x.type.shape, None)) for o in outs]  # static T, B where known (JAX)
        finals.extend(o[-1] for o in outs)
        inputs = outs[0] if keep is None else outs[0] * keep[layer]
    return inputs, pt.stack(finals)


def output_logits(hs, p):
    """(..., H) hidden states -> (N, V) logits h·W_y + b_y, one row per position."""
    return pt.dot(hs.reshape((-1, hs.shape[-1])), p["W_y"]) + p["b_y"]


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
