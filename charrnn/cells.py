"""The recurrent cells, each defined once: its initialisation, its step, and its backward step.

As torch-rnn's LSTM.lua holds one cell's forward and backward together, each class here owns one
cell's equations; model.py (the layer loops, the generator's step) and bptt.py (backpropagation
through time) are drivers over this table, so adding a cell is adding an entry to CELLS.

Row-vector convention: a batch of states is (B, H); the gate blocks sit side by side in the columns
of W_x, W_h, b_x and b_h in PyTorch's order (GRU: r, z, n; LSTM: i, f, g, o). A step receives
`a_x`, the (B, G) input term x_t·W_x + b_x, already computed outside the time loop; a cell whose
recurrent bias only adds to it (`folds_bias`) gets a_x + b_h there instead (one addition for all
steps), and ignores its b_h argument. Every matrix product goes through `Cell.dot`, in the
precision the cell was made with (charrnn/precision.py).
"""
import numpy as np
import pytensor.tensor as pt

from charrnn import precision


def sigmoid_grad(s):
    """dσ/da from s = σ(a)."""
    return s * (1 - s)


class Cell:
    """One cell's equations. `saved` names what the forward step keeps for the backward step
    (and for `explain`): per-step (B, k·H) tensors, after the new states in the step's outputs."""

    gates = 1  # H-wide column blocks in W_x, W_h, b_x, b_h
    states = 1  # (B, H) state tensors per layer: h, and c for the LSTM
    folds_bias = True  # b_h adds straight to the input term, so it is added once outside the loop
    saved = ()
    gate_names = ()  # the blocks of the "gates" saved tensor, in order
    sigmoid_gates = ()  # those squashed by σ into (0, 1), whose saturation explain plots
    split_input_grad = False  # the gradients at the input and at the recurrent term differ (GRU)

    def __init__(self, config, precision="float32"):
        self.config = config
        self.precision = precision  # of the matrix products: float32 or bfloat16

    def dot(self, a, b):
        """a·b in the cell's precision."""
        return precision.dot(a, b, self.precision)

    def dot_t(self, a, b, rows=None):
        """aᵀ·b summed over rows (a weight gradient) in the cell's precision."""
        return precision.dot_t(a, b, self.precision, rows)

    @property
    def label(self):
        """The cell in words, for `info`."""
        return type(self).__name__.lower()

    def init(self, rng, W_x, W_h, b_x):
        """Fill one layer's freshly zeroed W_x, W_h and b_x in place: PyTorch's uniform(-1/sqrt(H), 1/sqrt(H))."""
        k = 1 / np.sqrt(W_h.shape[0])
        W_x[...] = rng.uniform(-k, k, size=W_x.shape)
        W_h[...] = rng.uniform(-k, k, size=W_h.shape)

    def init_output(self, rng, seed, W_y, b_y):
        """Fill the freshly zeroed output layer in place: nn.Linear's uniform(-1/sqrt(H), 1/sqrt(H)) for
        W_y and b_y, from a generator of their own (so the layers' draws do not depend on it). With the
        lesson's normal(0, sqrt(2/H)) W_y, the default network's three 20-minute runs averaged 0.011
        higher (benchmarks/README.md, "The output layer initialised as nn.Linear's")."""
        out = np.random.default_rng([seed, 7])
        k = 1 / np.sqrt(W_y.shape[0])
        W_y[...] = out.uniform(-k, k, size=W_y.shape)
        b_y[...] = out.uniform(-k, k, size=b_y.shape)

    def step(self, a_x, states, W_h, b_h):
        """(new states as a list, saved tensors as a list) for one time step."""
        raise NotImplementedError

    def backward_inputs(self, tape):
        """The (T, B, ...) sequences the backward step reads, from a layer's tape (see model.run_layer)."""
        raise NotImplementedError

    def backward_step(self, dh_out, inputs, dstates, W_hT):
        """One step back in time: dh_out is the gradient arriving at this step's output h from above,
        `inputs` this step's slices of backward_inputs, dstates the gradients at this step's new
        states from the step after it. Returns (gradients at the states it started from, dA_h, dA_x):
        dA_h at the recurrent term h_{t-1}·W_h + b_h, dA_x at the input term (the same tensor
        unless split_input_grad)."""
        raise NotImplementedError


class RNN(Cell):
    """The lesson's cell: h_t = act(x_t·W_x + b_x + h_{t-1}·W_h + b_h), act = relu or tanh."""

    @property
    def label(self):
        return f"rnn ({self.config.activation})"

    def init(self, rng, W_x, W_h, b_x):
        """The lesson's: W_x normal with scale sqrt(2/rows), W_h the identity."""
        W_x[...] = rng.normal(0.0, np.sqrt(2.0 / W_x.shape[0]), size=W_x.shape)
        W_h[...] = np.eye(W_h.shape[0])  # identity init keeps gradients from vanishing early (Le et al., 2015)

    def init_output(self, rng, seed, W_y, b_y):
        """The lesson's: W_y normal with scale sqrt(2/rows), drawn after the layers; b_y zero."""
        W_y[...] = rng.normal(0.0, np.sqrt(2.0 / W_y.shape[0]), size=W_y.shape)

    def step(self, a_x, states, W_h, b_h):
        (h,) = states
        a = a_x + self.dot(h, W_h)  # b_h is folded into a_x
        return [pt.maximum(a, 0) if self.config.activation == "relu" else pt.tanh(a)], []

    def backward_inputs(self, tape):
        return [tape["hs"]]

    def backward_step(self, dh_out, inputs, dstates, W_hT):
        (h,), (dh,) = inputs, dstates
        dh = dh + dh_out
        da = dh * (h > 0) if self.config.activation == "relu" else dh * (1 - h * h)
        return [self.dot(da, W_hT)], da, da


class GRU(Cell):
    """PyTorch's GRU: r, z = σ(...); n = tanh(x_n + r ⊙ (h·W_hn + b_hn)); h = (1 - z) ⊙ n + z ⊙ h."""

    gates, folds_bias, saved, gate_names, split_input_grad = 3, False, ("gates", "hn"), ("r", "z", "n"), True
    sigmoid_gates = ("r", "z")

    def step(self, a_x, states, W_h, b_h):
        (h,) = states
        H = h.type.shape[-1]
        hw = self.dot(h, W_h) + b_h  # (B, 3H)
        r = pt.sigmoid(a_x[:, :H] + hw[:, :H])
        z = pt.sigmoid(a_x[:, H : 2 * H] + hw[:, H : 2 * H])
        hn = hw[:, 2 * H :]
        n = pt.tanh(a_x[:, 2 * H :] + r * hn)
        return [(1 - z) * n + z * h], [pt.concatenate([r, z, n], axis=1), hn]

    def backward_inputs(self, tape):
        return [tape["gates"], tape["hn"], tape["h_prev"]]

    def backward_step(self, dh_out, inputs, dstates, W_hT):
        (gates, hn, h_prev), (dh,) = inputs, dstates
        H = hn.type.shape[-1]
        r, z, n = gates[:, :H], gates[:, H : 2 * H], gates[:, 2 * H :]
        dh = dh + dh_out
        dan = dh * (1 - z) * (1 - n * n)  # at the candidate's pre-activation
        dar = dan * hn * sigmoid_grad(r)
        daz = dh * (h_prev - n) * sigmoid_grad(z)
        dhw = pt.concatenate([dar, daz, dan * r], axis=1)  # r scales the recurrent candidate term only
        dxw = pt.concatenate([dar, daz, dan], axis=1)
        return [dh * z + self.dot(dhw, W_hT)], dhw, dxw


class LSTM(Cell):
    """PyTorch's LSTM: i, f, o = σ(...), g = tanh(...); c = f ⊙ c + i ⊙ g; h = o ⊙ tanh(c)."""

    gates, states, saved, gate_names, sigmoid_gates = 4, 2, ("gates", "tanh_c"), ("i", "f", "g", "o"), ("i", "f", "o")

    def init(self, rng, W_x, W_h, b_x):
        """PyTorch's uniform init, and a forget-gate bias of 1 so a new cell remembers by default."""
        super().init(rng, W_x, W_h, b_x)
        H = W_h.shape[0]
        b_x[H : 2 * H] = 1.0

    def step(self, a_x, states, W_h, b_h):
        h, c = states
        H = h.type.shape[-1]
        a = a_x + self.dot(h, W_h)  # (B, 4H), one product for all gates; b_h is folded into a_x
        i, f = pt.sigmoid(a[:, :H]), pt.sigmoid(a[:, H : 2 * H])
        g, o = pt.tanh(a[:, 2 * H : 3 * H]), pt.sigmoid(a[:, 3 * H :])
        c_new = f * c + i * g
        tanh_c = pt.tanh(c_new)
        return [o * tanh_c, c_new], [pt.concatenate([i, f, g, o], axis=1), tanh_c]

    def backward_inputs(self, tape):
        c0, cs = tape["states0"][1], tape["outs"][1]
        return [tape["gates"], tape["tanh_c"], pt.concatenate([c0[None], cs[:-1]], axis=0)]

    def backward_step(self, dh_out, inputs, dstates, W_hT):
        # h = o·tanh(c), c = f·c_prev + i·g:  dc += dh·o·(1 - tanh²c);  dA_[i|f|g|o] = dc·g·σ'(i) |
        # dc·c_prev·σ'(f) | dc·i·(1 - g²) | dh·tanh(c)·σ'(o);  dh_prev = dA·W_hᵀ, dc_prev = dc·f
        (gates, tanh_c, c_prev), (dh, dc) = inputs, dstates
        H = tanh_c.type.shape[-1]
        i, f, g, o = gates[:, :H], gates[:, H : 2 * H], gates[:, 2 * H : 3 * H], gates[:, 3 * H :]
        dh = dh + dh_out
        dc = dc + dh * o * (1 - tanh_c * tanh_c)
        da = pt.concatenate([dc * g * sigmoid_grad(i), dc * c_prev * sigmoid_grad(f), dc * i * (1 - g * g),
                             dh * tanh_c * sigmoid_grad(o)], axis=1)
        return [self.dot(da, W_hT), dc * f], da, da


CELLS = {"rnn": RNN, "gru": GRU, "lstm": LSTM}


def cell(config, precision="float32"):
    """The cell a ModelConfig names, computing its products in `precision`."""
    return CELLS[config.cell](config, precision)
