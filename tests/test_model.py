import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest
from pytensor.tensor.special import softmax

from charrnn import model
from charrnn.backend import compile_function
from charrnn.corpus import as_column
from reference import finite_difference_grads, forward, loss, one_hot, random_params

V, H, T = 4, 5, 3


@pytest.fixture
def params():
    return random_params(V, H)


def loss_and_states_fn(shared, seq_len):
    x = pt.tensor("x", dtype="int32", shape=(seq_len, 1))
    y = pt.tensor("y", dtype="int32", shape=(seq_len, 1))
    hs = model.hidden_states(x, pt.zeros((1, H), dtype="float64"), shared)
    logits = model.output_logits(hs, shared)
    return x, y, hs, logits, model.sequence_loss(logits, y)


def test_forward_and_loss_equal_numpy_loop(params):
    shared = model.shared_params(params)
    x, y, hs, logits, total = loss_and_states_fn(shared, 7)
    fn = compile_function([x, y], [hs[:, 0], softmax(logits, axis=-1), total])
    xs, ys = [0, 3, 1, 1, 2, 0, 3], [3, 1, 1, 2, 0, 3, 2]
    got_h, got_y, got_loss = fn(as_column(xs), as_column(ys))
    want_h, want_y = forward(params, xs)
    np.testing.assert_allclose(got_h, want_h, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(got_y, want_y, rtol=1e-10, atol=1e-12)
    assert got_loss == pytest.approx(loss(params, xs, ys), rel=1e-10)
    assert (want_h > 0).any() and (want_h == 0).any()  # both sides of the relu are exercised


def test_gradients_equal_finite_differences(params):
    shared = model.shared_params(params)
    x, y, _, _, total = loss_and_states_fn(shared, T)
    fn = compile_function([x, y], pytensor.grad(total, list(shared.values())))
    xs, ys = [2, 0, 3], [0, 3, 1]
    got = dict(zip(model.PARAM_NAMES, fn(as_column(xs), as_column(ys))))
    want = finite_difference_grads(params, xs, ys)
    for name in model.PARAM_NAMES:
        assert np.abs(want[name]).max() > 1e-3, f"{name} gradient is trivially zero"
        np.testing.assert_allclose(got[name], want[name], rtol=1e-6, atol=1e-8, err_msg=name)


def test_row_lookup_equals_one_hot_matrix_product(params):
    W_x, b_x = pt.matrix("W_x", dtype="float64"), pt.vector("b_x", dtype="float64")
    x = pt.matrix("x", dtype="int32")
    literal = pt.dot(pt.eye(V, dtype="float64")[x.ravel()], W_x).reshape((x.shape[0], x.shape[1], -1)) + b_x
    fn = compile_function([x, W_x, b_x], [model.input_projection(x, W_x, b_x), literal])
    ids = np.array([[0, 3], [2, 2], [1, 0]], dtype=np.int32)
    lookup, product = fn(ids, params["W_x"], params["b_x"])
    np.testing.assert_array_equal(lookup, product)
    np.testing.assert_allclose(lookup, one_hot(ids, V) @ params["W_x"] + params["b_x"], rtol=1e-12)


def test_init_matches_the_lesson():
    cfg = model.ModelConfig(vocab_size=60, hidden=300)
    p = model.init_params(cfg, seed=1)
    assert all(p[name].dtype == np.float32 for name in model.PARAM_NAMES)
    np.testing.assert_array_equal(p["W_h"], np.eye(300))
    for name in ("b_x", "b_h", "b_y"):
        assert not p[name].any()
    assert p["W_x"].shape == (60, 300) and p["W_y"].shape == (300, 60)
    assert p["W_x"].std() == pytest.approx(np.sqrt(2 / 60), rel=0.05)
    assert p["W_y"].std() == pytest.approx(np.sqrt(2 / 300), rel=0.05)
    assert abs(p["W_x"].mean()) < 0.02
    assert not np.array_equal(p["W_x"], model.init_params(cfg, seed=2)["W_x"])


def test_masked_states_equal_the_unpadded_run(params):
    shared = model.shared_params(params)
    x, mask = pt.matrix("x", dtype="int32"), pt.matrix("m", dtype="float64")
    fn = compile_function([x, mask], model.hidden_states(x, pt.zeros((1, H), dtype="float64"), shared, mask)[-1])
    padded = fn(as_column([0, 0, 2, 1]), np.array([[0], [0], [1], [1]], dtype=np.float64))
    np.testing.assert_allclose(padded[0], forward(params, [2, 1])[0][-1], rtol=1e-12)
