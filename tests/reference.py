"""Plain numpy versions of the networks' equations: the independent reference the tests compare against."""
from functools import partial

import numpy as np
import pytensor

from charrnn.model import ModelConfig, layer_names, param_shapes

# float64 test graphs as built, run by PyTensor's Python implementations: nothing to compile (the C
# backend took 20 s a test on an empty cache; JAX, the default, computes in float32).
compile_py = partial(pytensor.function, mode="FAST_COMPILE")


def as_column(ids):
    """(N,) ids -> a contiguous (N, 1) int32 array: one sequence as a batch of one."""
    return np.ascontiguousarray(ids, dtype=np.int32).reshape(-1, 1)


def one_hot(ids, V):
    return np.eye(V)[np.asarray(ids)]


def sigmoid(a):
    return 1 / (1 + np.exp(-a))


def cell_step(cell, activation, x, states, W_x, b_x, W_h, b_h):
    """One time step of one layer for one example, written from the README's equations."""
    return gated_step(cell, activation, x, states, W_x, b_x, W_h, b_h)[0]


def gated_step(cell, activation, x, states, W_x, b_x, W_h, b_h):
    """cell_step's new states, and its gate activations (GRU: r|z|n, LSTM: i|f|g|o; None for rnn)."""
    if cell == "rnn":
        a = x @ W_x + b_x + states[0] @ W_h + b_h
        return [np.maximum(a, 0) if activation == "relu" else np.tanh(a)], None
    H = len(states[0])
    if cell == "gru":
        ax, ah = x @ W_x + b_x, states[0] @ W_h + b_h
        r = sigmoid(ax[:H] + ah[:H])
        z = sigmoid(ax[H : 2 * H] + ah[H : 2 * H])
        n = np.tanh(ax[2 * H :] + r * ah[2 * H :])
        return [(1 - z) * n + z * states[0]], np.concatenate([r, z, n])
    a = x @ W_x + b_x + states[0] @ W_h + b_h
    i, f, g, o = sigmoid(a[:H]), sigmoid(a[H : 2 * H]), np.tanh(a[2 * H : 3 * H]), sigmoid(a[3 * H :])
    c = f * states[1] + i * g
    return [o * np.tanh(c), c], np.concatenate([i, f, g, o])


def forward(p, x_ids, config=None, states=None, keep=None):
    """Top-layer outputs (T, H), softmax outputs (T, V) and final states [per layer: h (and c)] for
    one sequence with literal one-hot inputs; keep: optional (layers, T, H) dropout multipliers."""
    tops, ys, finals, _ = trace(p, x_ids, config, states, keep)
    return tops, ys, finals


def trace(p, x_ids, config=None, states=None, keep=None):
    """forward's results, and per layer each step's states and gate activations: a list of
    (T, ...) arrays per layer, [h, (c,) gates] (gates absent for rnn)."""
    V, H = p["W_y"].shape[1], p["W_y"].shape[0]
    config = config or ModelConfig(vocab_size=V, hidden=H, cell="rnn", layers=1, activation="relu")
    per_layer = 2 if config.cell == "lstm" else 1
    states = [list(states[l * per_layer : (l + 1) * per_layer]) if states is not None else [np.zeros(H)] * per_layer
              for l in range(config.layers)]
    tops, ys, steps = [], [], [[] for _ in range(config.layers)]
    for t, x in enumerate(one_hot(x_ids, V)):
        inp = x
        for layer in range(config.layers):
            weights = [p[name] for name in layer_names(layer)]
            states[layer], gates = gated_step(config.cell, config.activation, inp, states[layer], *weights)
            steps[layer].append([*states[layer], *([] if gates is None else [gates])])
            inp = states[layer][0] if keep is None else states[layer][0] * keep[layer, t]
        z = inp @ p["W_y"] + p["b_y"]
        e = np.exp(z - z.max())
        tops.append(inp)
        ys.append(e / e.sum())
    taped = [[np.array(k) for k in zip(*layer)] for layer in steps]
    return np.array(tops), np.array(ys), [s for layer in states for s in layer], taped


def loss(p, x_ids, y_ids, config=None, keep=None):
    """Categorical cross-entropy summed over the sequence, in nats."""
    _, ys, _ = forward(p, x_ids, config, keep=keep)
    return -sum(np.log(ys[t, y]) for t, y in enumerate(y_ids))


def finite_difference_grads(p, x_ids, y_ids, config=None, eps=1e-6):
    """Central differences of `loss` with respect to every parameter entry."""
    grads = {}
    for name, w in p.items():
        g = np.zeros_like(w)
        for idx in np.ndindex(w.shape):
            old = w[idx]
            w[idx] = old + eps
            up = loss(p, x_ids, y_ids, config)
            w[idx] = old - eps
            down = loss(p, x_ids, y_ids, config)
            w[idx] = old
            g[idx] = (up - down) / (2 * eps)
        grads[name] = g
    return grads


def random_params(V, H, seed=0, config=None):
    """Random float64 parameters (W_h not the identity), so every term of the recurrence matters."""
    rng = np.random.default_rng(seed)
    config = config or ModelConfig(vocab_size=V, hidden=H, cell="rnn", layers=1)
    scale = {"W": 0.8, "b": 0.3}
    return {name: rng.normal(0, scale[name[0]], shape) for name, shape in param_shapes(config).items()}
