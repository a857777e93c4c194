"""Plain numpy versions of the lesson-6 equations: the independent reference the tests compare against."""
import numpy as np


def one_hot(ids, V):
    return np.eye(V)[np.asarray(ids)]


def forward(p, x_ids, h0=None):
    """Hidden states (T, H) and softmax outputs (T, V) for one sequence, with literal one-hot inputs."""
    V, H = p["W_x"].shape
    h = np.zeros(H) if h0 is None else h0
    hs, ys = [], []
    for x in one_hot(x_ids, V):
        h = np.maximum(x @ p["W_x"] + p["b_x"] + h @ p["W_h"] + p["b_h"], 0)
        z = h @ p["W_y"] + p["b_y"]
        e = np.exp(z - z.max())
        hs.append(h)
        ys.append(e / e.sum())
    return np.array(hs), np.array(ys)


def loss(p, x_ids, y_ids):
    """Categorical cross-entropy summed over the sequence, in nats."""
    _, ys = forward(p, x_ids)
    return -sum(np.log(ys[t, y]) for t, y in enumerate(y_ids))


def finite_difference_grads(p, x_ids, y_ids, eps=1e-6):
    """Central differences of `loss` with respect to every parameter entry."""
    grads = {}
    for name, w in p.items():
        g = np.zeros_like(w)
        for idx in np.ndindex(w.shape):
            old = w[idx]
            w[idx] = old + eps
            up = loss(p, x_ids, y_ids)
            w[idx] = old - eps
            down = loss(p, x_ids, y_ids)
            w[idx] = old
            g[idx] = (up - down) / (2 * eps)
        grads[name] = g
    return grads


def random_params(V, H, seed=0):
    """Random float64 parameters with a non-identity W_h, so every term of the recurrence matters."""
    rng = np.random.default_rng(seed)
    return {
        "W_x": rng.normal(0, 0.8, (V, H)),
        "b_x": rng.normal(0, 0.3, H),
        "W_h": rng.normal(0, 0.5, (H, H)),
        "b_h": rng.normal(0, 0.3, H),
        "W_y": rng.normal(0, 0.8, (H, V)),
        "b_y": rng.normal(0, 0.3, V),
    }
