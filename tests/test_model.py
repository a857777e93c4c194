import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest
from pytensor.tensor.special import softmax

from charrnn import cells, model
from charrnn.model import ModelConfig
from reference import as_column, compile_py, finite_difference_grads, forward, loss, one_hot, random_params

V, H, T = 4, 5, 3
CELLS = [("rnn", "relu"), ("rnn", "tanh"), ("gru", "relu"), ("lstm", "relu")]

# float64 against float64 references, compiled by compile_py (tests/test_backends.py runs the C backend
# against JAX).


def graph(shared, config, batch=1):
    """Symbolic (T, B) inputs and targets, (S, B, H) states, top outputs, probabilities, loss, finals."""
    x, y = pt.matrix("x", dtype="int32"), pt.matrix("y", dtype="int32")
    states = pt.tensor("states", dtype="float64", shape=(config.state_size, batch, config.hidden))
    top, finals, _ = model.run_layers(x, states, shared, config)
    logits = model.output_logits(top, shared)
    return x, y, states, top, softmax(logits, axis=-1), model.sequence_loss(logits, y), finals


def zeros(config, batch=1):
    return np.zeros((config.state_size, batch, config.hidden))


@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("cell, activation", CELLS)
def test_forward_and_loss_equal_numpy_loop(cell, activation, layers):
    config = ModelConfig(vocab_size=V, hidden=H, cell=cell, activation=activation, layers=layers)
    params = random_params(V, H, config=config)
    x, y, states, top, probs, total, finals = graph(model.shared_params(params), config)
    fn = compile_py([x, y, states], [top[:, 0], probs, total, finals[:, 0]])
    xs, ys = [0, 3, 1, 1, 2, 0, 3], [3, 1, 1, 2, 0, 3, 2]
    got_top, got_probs, got_loss, got_finals = fn(as_column(xs), as_column(ys), zeros(config))
    want_top, want_probs, want_finals = forward(params, xs, config)
    np.testing.assert_allclose(got_top, want_top, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(got_probs, want_probs, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(got_finals, want_finals, rtol=1e-10, atol=1e-12)
    assert got_loss == pytest.approx(loss(params, xs, ys, config), rel=1e-10)
    if activation == "relu" and cell == "rnn":
        assert (want_top > 0).any() and (want_top == 0).any()  # both sides of the relu are exercised


@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("cell, activation", CELLS)
def test_gradients_equal_finite_differences(cell, activation, layers):
    config = ModelConfig(vocab_size=V, hidden=H, cell=cell, activation=activation, layers=layers)
    params = random_params(V, H, seed=1, config=config)
    shared = model.shared_params(params)
    x, y, states, _, _, total, _ = graph(shared, config)
    fn = compile_py([x, y, states], pytensor.grad(total, list(shared.values())))
    xs, ys = [2, 0, 3], [0, 3, 1]
    got = dict(zip(shared, fn(as_column(xs), as_column(ys), zeros(config))))
    want = finite_difference_grads(params, xs, ys, config)
    for name in params:
        assert np.abs(want[name]).max() > 1e-4, f"{name} gradient is trivially zero"
        np.testing.assert_allclose(got[name], want[name], rtol=1e-5, atol=1e-7, err_msg=name)


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_carried_state_equals_the_concatenated_run(cell):
    """Two chunks, the second starting from the first's final states, equal one run over both."""
    config = ModelConfig(vocab_size=V, hidden=H, cell=cell, layers=2)
    params = random_params(V, H, seed=2, config=config)
    x, y, states, top, _, _, finals = graph(model.shared_params(params), config, batch=2)
    fn = compile_py([x, states], [top, finals])
    ids = np.array([[0, 3], [1, 1], [2, 0], [3, 3], [1, 2], [0, 1], [2, 2]], dtype=np.int32)  # (7, 2)
    whole_top, whole_finals = fn(ids, zeros(config, 2))
    top1, finals1 = fn(ids[:3], zeros(config, 2))
    top2, finals2 = fn(ids[3:], finals1)
    np.testing.assert_allclose(np.concatenate([top1, top2]), whole_top, rtol=1e-12)
    np.testing.assert_allclose(finals2, whole_finals, rtol=1e-12)
    np.testing.assert_allclose(whole_top[:, 1], forward(params, ids[:, 1], config)[0], rtol=1e-10)


def test_dropout_multiplies_each_layer_output():
    config = ModelConfig(vocab_size=V, hidden=H, cell="gru", layers=2, dropout=0.5)
    params = random_params(V, H, seed=3, config=config)
    shared = model.shared_params(params)
    x = pt.matrix("x", dtype="int32")
    keep = pt.tensor("keep", dtype="float64", shape=(2, None, 1, H))
    top, _, _ = model.run_layers(x, pt.zeros((2, 1, H), dtype="float64"), shared, config, keep=keep)
    fn = compile_py([x, keep], top[:, 0])
    mask = (np.random.default_rng(0).random((2, 4, 1, H)) > 0.5) * 2.0  # inverted dropout, p = 0.5
    xs = [1, 0, 2, 3]
    np.testing.assert_allclose(fn(as_column(xs), mask), forward(params, xs, config, keep=mask[:, :, 0])[0], rtol=1e-10)
    assert (fn(as_column(xs), mask) == 0).any()


def test_row_lookup_equals_one_hot_matrix_product():
    params = random_params(V, H)
    W_x, b_x = pt.matrix("W_x", dtype="float64"), pt.vector("b_x", dtype="float64")
    x = pt.matrix("x", dtype="int32")
    literal = pt.dot(pt.eye(V, dtype="float64")[x.ravel()], W_x).reshape((x.shape[0], x.shape[1], -1)) + b_x
    fn = compile_py([x, W_x, b_x], [model.input_projection(x, W_x, b_x), literal])
    ids = np.array([[0, 3], [2, 2], [1, 0]], dtype=np.int32)
    lookup, product = fn(ids, params["W_x"], params["b_x"])
    np.testing.assert_array_equal(lookup, product)
    np.testing.assert_allclose(lookup, one_hot(ids, V) @ params["W_x"] + params["b_x"], rtol=1e-12)


def test_rnn_init_matches_the_lesson():
    cfg = ModelConfig(vocab_size=60, hidden=300, cell="rnn", layers=1)
    p = model.init_params(cfg, seed=1)
    assert list(p) == ["W_x", "b_x", "W_h", "b_h", "W_y", "b_y"]
    assert all(a.dtype == np.float32 for a in p.values())
    np.testing.assert_array_equal(p["W_h"], np.eye(300))
    for name in ("b_x", "b_h", "b_y"):
        assert not p[name].any()
    assert p["W_x"].shape == (60, 300) and p["W_y"].shape == (300, 60)
    assert p["W_x"].std() == pytest.approx(np.sqrt(2 / 60), rel=0.05)
    assert p["W_y"].std() == pytest.approx(np.sqrt(2 / 300), rel=0.05)
    assert abs(p["W_x"].mean()) < 0.02
    assert not np.array_equal(p["W_x"], model.init_params(cfg, seed=2)["W_x"])


def test_gated_init_and_names():
    lstm = model.init_params(ModelConfig(vocab_size=10, hidden=8, cell="lstm", layers=2), seed=0)
    assert list(lstm) == ["W_x", "b_x", "W_h", "b_h", "W_x.1", "b_x.1", "W_h.1", "b_h.1", "W_y", "b_y"]
    assert lstm["W_x"].shape == (10, 32) and lstm["W_x.1"].shape == (8, 32) and lstm["W_h.1"].shape == (8, 32)
    for b_x in (lstm["b_x"], lstm["b_x.1"]):  # gate order i, f, g, o: forget bias 1, the rest 0
        np.testing.assert_array_equal(b_x, np.r_[np.zeros(8), np.ones(8), np.zeros(16)])
    assert not lstm["b_h"].any()
    assert np.abs(lstm["W_h"]).max() <= 1 / np.sqrt(8)
    gru = model.init_params(ModelConfig(vocab_size=10, hidden=8, cell="gru"), seed=0)
    assert gru["W_h"].shape == (8, 24) and not gru["b_x"].any()


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_gated_output_layer_starts_as_nn_linear(cell):
    """W_y and b_y uniform(-1/sqrt(H), 1/sqrt(H)), from a generator of their own: the layers' weights are
    the ones the seed drew before the output layer had its own generator."""
    cfg = ModelConfig(vocab_size=65, hidden=400, cell=cell, layers=2)
    p = model.init_params(cfg, seed=3)
    k = 1 / np.sqrt(400)
    for name in ("W_y", "b_y"):
        assert np.abs(p[name]).max() <= k and np.abs(p[name]).max() > 0.95 * k
    assert p["W_y"].std() == pytest.approx(k / np.sqrt(3), rel=0.02)
    assert abs(p["W_y"].mean()) < 0.01 * k
    rng = np.random.default_rng(3)
    layer = cells.cell(cfg)
    W_x, b_x, W_h = np.zeros((65, layer.gates * 400)), np.zeros(layer.gates * 400), np.zeros((400, layer.gates * 400))
    layer.init(rng, W_x, W_h, b_x)
    np.testing.assert_array_equal(p["W_x"], W_x.astype(np.float32))
    np.testing.assert_array_equal(p["W_h"], W_h.astype(np.float32))
    assert not np.array_equal(p["W_y"], model.init_params(cfg, seed=4)["W_y"])


def test_masked_states_equal_the_unpadded_run():
    config = ModelConfig(vocab_size=V, hidden=H, cell="lstm")
    params = random_params(V, H, config=config)
    x, mask = pt.matrix("x", dtype="int32"), pt.matrix("m", dtype="float64")
    top, _, _ = model.run_layers(x, pt.zeros((2, 1, H), dtype="float64"), model.shared_params(params), config, mask)
    padded = compile_py([x, mask], top[-1])(as_column([0, 0, 2, 1]), np.array([[0], [0], [1], [1]], dtype=float))
    np.testing.assert_allclose(padded[0], forward(params, [2, 1], config)[0][-1], rtol=1e-12)


def test_unrolled_masked_layers_equal_the_numpy_loop():
    """Blocks of two steps per scan iteration (padding masked out, as the sampler reads a window)
    give the plain loop's states."""
    config = ModelConfig(vocab_size=V, hidden=H, cell="lstm", layers=2)
    params = random_params(V, H, config=config)
    x, mask = pt.tensor("x", dtype="int32", shape=(4, 1)), pt.tensor("m", dtype="float64", shape=(4, 1))
    top, finals, _ = model.run_layers(x, pt.zeros((4, 1, H), dtype="float64"), model.shared_params(params), config,
                                      mask, unroll=2)
    got_top, got_finals = compile_py([x, mask], [top[:, 0], finals[:, 0]])(as_column([0, 2, 1, 3]),
                                                                           np.array([[0], [1], [1], [1]], dtype=float))
    want_top, _, want_finals = forward(params, [2, 1, 3], config)
    np.testing.assert_allclose(got_top[1:], want_top, rtol=1e-12)
    np.testing.assert_allclose(got_finals, want_finals, rtol=1e-12)
    with pytest.raises(ValueError, match="unroll 3 does not divide the 4 time steps"):
        model.run_layers(x, pt.zeros((4, 1, H), dtype="float64"), model.shared_params(params), config, unroll=3)


def test_unroll_for_takes_the_largest_divisor():
    assert [model.unroll_for(T, 8) for T in (64, 8, 100, 7, 1, 12)] == [8, 8, 5, 7, 1, 6]
