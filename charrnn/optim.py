"""Optimizers and gradient clipping as PyTensor update lists.

Each optimizer keeps its state in shared variables named `<state>.<param>` (a step counter `t` for
Adam), so a checkpoint can carry them. Hyperparameters are PyTorch's defaults.
"""
import numpy as np
import pytensor
import pytensor.tensor as pt

OPTIMIZERS = ("sgd", "momentum", "rmsprop", "adam")
MOMENTUM = 0.9  # v <- mu v + g
RMS_ALPHA, ADAM_BETAS, EPS = 0.99, (0.9, 0.999), 1e-8


def clip_by_global_norm(grads, max_norm):
    """Scale all gradients by min(1, max_norm / ||g||) where ||g|| is their joint L2 norm; 0 disables."""
    if not max_norm:
        return grads
    norm = pt.sqrt(sum(pt.sum(g**2) for g in grads))
    scale = pt.minimum(1.0, max_norm / (norm + 1e-6)).astype(grads[0].dtype)
    return [g * scale for g in grads]


SLOTS = {"sgd": (), "momentum": ("v",), "rmsprop": ("s",), "adam": ("m", "v")}  # state arrays per parameter


def state_names(name, param_names):
    """The names of optimizer `name`'s state for these parameters: `<slot>.<param>`, and adam's `t`."""
    return [f"{slot}.{p}" for slot in SLOTS[name] for p in param_names] + (["t"] if name == "adam" else [])


def optimizer_state(name, params):
    """Fresh shared state variables for optimizer `name`, keyed `<state>.<param>`."""
    state = {
        f"{slot}.{pname}": pytensor.shared(np.zeros_like(p.get_value()), name=f"{slot}.{pname}", shape=p.type.shape)
        for slot in SLOTS[name]
        for pname, p in params.items()
    }
    if name == "adam":
        dtype = next(iter(params.values())).dtype  # float32: exact to 2**24 updates
        state["t"] = pytensor.shared(np.zeros((), dtype=dtype), name="t")
    return state


def updates(name, params, grads, state, lr):
    """Update pairs for params and optimizer state; grads and params are aligned dicts."""
    out = []
    t = None
    if name == "adam":
        t = state["t"] + 1
        out.append((state["t"], t))
    for pname, w in params.items():
        g = grads[pname]
        if name == "sgd":
            step = g
        elif name == "momentum":
            v = state[f"v.{pname}"]
            step = (MOMENTUM * v + g).astype(v.dtype)
            out.append((v, step))
        elif name == "rmsprop":
            s = state[f"s.{pname}"]
            s_new = (RMS_ALPHA * s + (1 - RMS_ALPHA) * g**2).astype(s.dtype)
            out.append((s, s_new))
            step = g / (pt.sqrt(s_new) + EPS)
        else:
            step = _adam(state, pname, g, t, out)
        out.append((w, (w - lr * step).astype(w.dtype)))
    return out


def _adam(state, pname, g, t, out):
    b1, b2 = ADAM_BETAS
    m, v = state[f"m.{pname}"], state[f"v.{pname}"]
    m_new = (b1 * m + (1 - b1) * g).astype(m.dtype)
    v_new = (b2 * v + (1 - b2) * g**2).astype(v.dtype)
    out.extend([(m, m_new), (v, v_new)])
    m_hat = m_new / (1 - b1**t)
    v_hat = v_new / (1 - b2**t)
    return (m_hat / (pt.sqrt(v_hat) + EPS)).astype(g.dtype)
