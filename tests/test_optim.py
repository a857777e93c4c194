from functools import partial

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest

from charrnn import optim
from charrnn.backend import compile_function as compile_in

LR = 0.1

# float64 against float64 references: the C backend (JAX, the default, computes in float32).
compile_function = partial(compile_in, backend="c")


def numpy_steps(name, w, grads):
    """The optimizer's update rule written out in numpy (PyTorch's formulas), applied per gradient."""
    w, m, v, s = w.copy(), np.zeros_like(w), np.zeros_like(w), np.zeros_like(w)
    for t, g in enumerate(grads, start=1):
        if name == "sgd":
            w -= LR * g
        elif name == "momentum":
            v = 0.9 * v + g
            w -= LR * v
        elif name == "rmsprop":
            s = 0.99 * s + 0.01 * g**2
            w -= LR * g / (np.sqrt(s) + 1e-8)
        else:
            m, v = 0.9 * m + 0.1 * g, 0.999 * v + 0.001 * g**2
            w -= LR * (m / (1 - 0.9**t)) / (np.sqrt(v / (1 - 0.999**t)) + 1e-8)
    return w


@pytest.mark.parametrize("name", optim.OPTIMIZERS)
def test_each_optimizer_equals_numpy_reference(name):
    w0 = np.array([[0.5, -1.0], [2.0, 0.25]])
    params = {"w": pytensor.shared(w0.copy(), name="w")}
    g = pt.matrix("g", dtype="float64")
    state = optim.optimizer_state(name, params)
    lr = pt.scalar("lr", dtype="float64")
    fn = compile_function([g, lr], [], updates=optim.updates(name, params, {"w": g}, state, lr))
    grads = [np.array([[0.1, -0.2], [0.3, 0.0]]), np.array([[-0.4, 0.5], [0.1, 0.2]]), np.array([[0.2, 0.2], [-0.3, 1.0]])]
    for grad in grads:
        fn(grad, np.asarray(LR))
    # rtol 1e-6, not 1e-12: the graph's constants (0.9, 0.999, 1e-8) are float32, as floatX is
    np.testing.assert_allclose(params["w"].get_value(), numpy_steps(name, w0, grads), rtol=1e-6)
    assert not np.allclose(params["w"].get_value(), numpy_steps("sgd", w0, grads)) or name == "sgd"


def test_clip_by_global_norm():
    a, b = pt.vector("a", dtype="float64"), pt.vector("b", dtype="float64")
    fn = compile_function([a, b], optim.clip_by_global_norm([a, b], 5.0))
    big = fn(np.array([3.0, 4.0]), np.array([0.0, 12.0]))  # joint norm 13
    np.testing.assert_allclose(np.concatenate(big), np.array([3, 4, 0, 12]) * 5 / 13, rtol=1e-6)
    small = fn(np.array([0.3, 0.4]), np.array([0.0, 1.2]))  # norm 1.3: left alone
    np.testing.assert_allclose(np.concatenate(small), [0.3, 0.4, 0.0, 1.2], rtol=1e-12)
    assert optim.clip_by_global_norm([a], 0) == [a]
