"""The lesson-6 network as a PyTensor graph: configuration, parameters, the scan step and the loss.

Pure graph code: no I/O and no printing. Row-vector convention throughout, so a batch of
hidden states is (B, H) and a sequence of them is (T, B, H).
"""
from dataclasses import dataclass

import numpy as np
import pytensor
import pytensor.tensor as pt
from pytensor.gradient import zero_grad

PARAM_NAMES = ("W_x", "b_x", "W_h", "b_h", "W_y", "b_y")


@dataclass(frozen=True)
class ModelConfig:
    vocab_size: int  # distinct characters; the one-hot input and softmax output width
    hidden: int = 256  # lesson 6: n_hidden = 256


def init_params(config, seed=0, dtype="float32"):
    """The lesson's initial weights as numpy arrays, keyed by PARAM_NAMES."""
    rng = np.random.default_rng(seed)
    V, H = config.vocab_size, config.hidden

    def normal(rows, cols):
        return rng.normal(0.0, np.sqrt(2.0 / rows), size=(rows, cols))  # He scale sqrt(2/rows)

    arrays = {
        "W_x": normal(V, H),  # (V, H)
        "b_x": np.zeros(H),
        "W_h": np.eye(H),  # identity init keeps gradients from vanishing early (Le et al., 2015)
        "b_h": np.zeros(H),
        "W_y": normal(H, V),  # (H, V)
        "b_y": np.zeros(V),
    }
    return {name: arrays[name].astype(dtype) for name in PARAM_NAMES}


def shared_params(arrays):
    """Named shared variables for the arrays of `init_params` or a checkpoint."""
    return {name: pytensor.shared(arrays[name], name=name) for name in PARAM_NAMES}


def input_projection(x, W_x, b_x):
    """x_t·W_x + b_x for one-hot x_t, computed as a row lookup: (T, B) ids -> (T, B, H)."""
    return W_x[x] + b_x


def rnn_step(xw_t, h_tm1, W_h, b_h):
    """h_t = relu(x_t·W_x + b_x + h_{t-1}·W_h + b_h), with x_t·W_x + b_x already looked up."""
    return pt.maximum(xw_t + pt.dot(h_tm1, W_h) + b_h, 0)


def masked_rnn_step(xw_t, m_t, h_tm1, W_h, b_h):
    """rnn_step that holds the state at zero where the (B,) mask m_t is 0 (left padding)."""
    return m_t[:, None] * rnn_step(xw_t, h_tm1, W_h, b_h)


def hidden_states(x, h0, p, mask=None):
    """Run the recurrence over (T, B) ids from the (B, H) state h0; returns (T, B, H).

    With a (T, B) 0/1 mask, masked-out leading steps leave the state at zero, so a right-aligned
    shorter sequence gives exactly the states it would give on its own.
    """
    xw = input_projection(x, p["W_x"], p["b_x"])  # (T, B, H)
    step = rnn_step if mask is None else masked_rnn_step

    def typed_step(*args):  # scan needs the new state to keep h0's static shape
        return pt.specify_shape(step(*args), args[-3].type.shape)

    return pytensor.scan(
        typed_step,
        sequences=[xw] if mask is None else [xw, mask],
        outputs_info=[h0],
        non_sequences=[p["W_h"], p["b_h"]],
        return_updates=False,
        strict=True,
    )


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


def sequence_loss(logits, targets):
    """Categorical cross-entropy of softmax(logits) against integer targets, summed (nats).

    log-softmax with integer targets rather than sum(onehot * log(softmax)): the latter turns
    NaN in float32 once a non-target probability underflows to 0.
    """
    y = targets.reshape((-1,))
    return -log_softmax(logits)[pt.arange(y.shape[0]), y].sum()
