"""The written-out backpropagation through time equals PyTensor's autodiff of the same network,
and finite differences of the numpy reference."""
import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest

from charrnn import bptt, cells, model
from charrnn.model import ModelConfig
from reference import compile_py, finite_difference_grads, random_params

V, H, T, B = 5, 4, 6, 3
CELLS = [("rnn", "relu", 1, 0.3), ("rnn", "tanh", 2, 0.3), ("gru", "relu", 2, 0.3), ("lstm", "relu", 2, 0.3),
         ("gru", "relu", 3, 0.3), ("lstm", "relu", 3, 0.3),  # 3: a middle layer, both below and above another
         ("rnn", "relu", 2, 0.0), ("gru", "relu", 2, 0.0), ("lstm", "relu", 3, 0.0)]  # no dropout masks at all


def weighted_loss(top, p, y, w):
    return (model.token_nll(model.output_logits(top, p), y) * w.reshape((-1,))).sum()


@pytest.mark.parametrize("cell,activation,layers,dropout", CELLS)
def test_written_out_gradients_equal_autodiff(cell, activation, layers, dropout):
    check_against_autodiff(ModelConfig(vocab_size=V, hidden=H, cell=cell, layers=layers, activation=activation,
                                       dropout=dropout))


@pytest.mark.parametrize("cell,layers,unroll", [("rnn", 1, 6), ("gru", 2, 2), ("lstm", 2, 3)])
def test_unrolled_scans_give_the_same_gradients(cell, layers, unroll):
    """Several time steps per scan iteration (T = 6: two blocks of 3, three of 2, or one of 6) change
    nothing but the loop's shape."""
    check_against_autodiff(ModelConfig(vocab_size=V, hidden=H, cell=cell, layers=layers, dropout=0.3), unroll)


class Leaky(cells.Cell):
    """A cell that is not charrnn's, to show that one entry in the table is all a new cell needs:
    n = tanh(x·W_x + b_x + h·W_h + b_h), h_t = (h + n) / 2."""

    saved = ("n",)

    def step(self, a_x, states, W_h, b_h):
        n = pt.tanh(a_x + pt.dot(states[0], W_h))
        return [(states[0] + n) / 2], [n]

    def backward_inputs(self, tape):
        return [tape["n"]]

    def backward_step(self, dh_out, inputs, dstates, W_hT):
        dh = dstates[0] + dh_out
        da = dh / 2 * (1 - inputs[0] ** 2)
        return [dh / 2 + pt.dot(da, W_hT)], da, da


def test_a_new_cell_is_one_entry_in_the_table(monkeypatch):
    monkeypatch.setitem(cells.CELLS, "leaky", Leaky)
    check_against_autodiff(ModelConfig(vocab_size=V, hidden=H, cell="leaky", layers=2, dropout=0.3))


def check_against_autodiff(config, unroll=1):
    """The written-out gradients of `config`'s network on random data, its scans running `unroll`
    steps per iteration, equal pytensor.grad's through the plain scans."""
    layers, dropout = config.layers, config.dropout
    rng = np.random.default_rng(7)
    p = model.shared_params(random_params(V, H, seed=3, config=config))
    x, y = (pt.tensor(n, dtype="int32", shape=(T, B)) for n in "xy")
    w = pt.tensor("w", dtype="float64", shape=(T, B))
    states0 = pt.tensor("states", dtype="float64", shape=(config.state_size, B, H))
    keep = pt.tensor("keep", dtype="float64", shape=(layers, T, B, H)) if dropout else None
    names = list(p)
    top_ref, finals_ref, _ = model.run_layers(x, states0, p, config, keep=keep)
    loss_ref = weighted_loss(top_ref, p, y, w)
    auto = pytensor.grad(loss_ref, [p[n] for n in names])
    top, finals, tape = model.run_layers(x, states0, p, config, keep=keep, tape=True, unroll=unroll)
    loss = weighted_loss(top, p, y, w)
    dW_y, db_y, dtop = pytensor.grad(loss, [p["W_y"], p["b_y"], top])
    written = {"W_y": dW_y, "b_y": db_y, **bptt.backward(x, dtop, tape, p, config, keep, unroll=unroll)}
    masks = [keep] if dropout else []
    fn = compile_py([x, y, w, states0, *masks],
                   [loss_ref, loss, finals_ref, finals, *auto, *(written[n] for n in names)])
    args = (rng.integers(0, V, (T, B)).astype(np.int32), rng.integers(0, V, (T, B)).astype(np.int32),
            (rng.random((T, B)) > 0.2).astype(float), rng.normal(0, 0.5, (config.state_size, B, H)),
            *([(rng.random((layers, T, B, H)) > 0.3) / (1 - dropout)] if dropout else []))
    out = fn(*args)
    np.testing.assert_allclose(out[0], out[1], rtol=1e-12)
    np.testing.assert_allclose(out[2], out[3], rtol=1e-12)
    n = len(names)
    for name, a, b in zip(names, out[4 : 4 + n], out[4 + n :], strict=True):
        assert np.abs(a).max() > 0, name
        np.testing.assert_allclose(b, a, rtol=1e-9, atol=1e-12, err_msg=name)


def test_written_out_gradients_equal_finite_differences():
    """The lesson's network on one sequence from a zero state, against the numpy reference."""
    config = ModelConfig(vocab_size=V, hidden=H, cell="rnn", layers=1, dropout=0.0)
    params = random_params(V, H, seed=1)
    p = model.shared_params({k: v.copy() for k, v in params.items()})
    xs, ys = [2, 0, 3, 4, 1], [0, 3, 4, 1, 1]
    x, y = (pt.tensor(n, dtype="int32", shape=(5, 1)) for n in "xy")
    top, _, tape = model.run_layers(x, pt.zeros((1, 1, H), dtype="float64"), p, config, tape=True)
    loss = model.token_nll(model.output_logits(top, p), y).sum()
    dW_y, db_y, dtop = pytensor.grad(loss, [p["W_y"], p["b_y"], top])
    written = {"W_y": dW_y, "b_y": db_y, **bptt.backward(x, dtop, tape, p, config)}
    names = list(written)
    got = compile_py([x, y], [written[n] for n in names])(np.array(xs, np.int32)[:, None],
                                                                   np.array(ys, np.int32)[:, None])
    want = finite_difference_grads(params, xs, ys)
    for name, g in zip(names, got, strict=True):
        np.testing.assert_allclose(g, want[name], rtol=1e-6, atol=1e-8, err_msg=name)
