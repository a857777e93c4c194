"""Dropout masks made in the graph: a function of (rng_seed, update, position), the same on every
backend, and Bernoulli(1 - p) as far as a few statistics can tell."""
import numpy as np
import pytensor.tensor as pt
import pytest

from charrnn import dropout
from charrnn.backend import compile_function


def fmix32(h):
    """MurmurHash3's finalizer with NumPy's shifts, the reference for the graph's."""
    h = h ^ (h >> 16)
    h = h * np.uint32(0x85EBCA6B)
    h = h ^ (h >> 13)
    h = h * np.uint32(0xC2B2AE35)
    return h ^ (h >> 16)


def reference_keep(shape, p, rng_seed, step):
    words = np.random.SeedSequence([rng_seed, 1]).generate_state(2)
    key = fmix32(fmix32(np.uint32(step) ^ words[0]) ^ words[1])
    bits = fmix32(np.arange(np.prod(shape), dtype=np.uint32).reshape(shape) * np.uint32(0x9E3779B1) ^ key)
    return (bits >= np.uint32(round(p * 2**32))) / (1 - p)


def masks(shape, p, rng_seed, backend):
    """fn(step) -> float32 multipliers, compiled with `backend`."""
    step = pt.scalar("step", dtype="uint32")
    fn = compile_function([step], dropout.keep_multipliers(shape, p, rng_seed, step, "float32"), backend=backend)
    return lambda s: np.asarray(fn(np.asarray(s, dtype=np.uint32)))


@pytest.mark.parametrize("backend", ["jax", "c", "numba"])
def test_masks_follow_from_seed_update_and_position(backend):
    shape = (2, 8, 4, 16)  # (layers, T, B, H)
    keep = masks(shape, 0.25, 7, backend)
    with np.errstate(over="ignore"):
        for step in (0, 1, 123456789):
            np.testing.assert_array_equal(keep(step), reference_keep(shape, 0.25, 7, step).astype(np.float32))
    assert set(np.unique(keep(0))) == {0.0, np.float32(1 / 0.75)}
    assert not np.array_equal(keep(0), keep(1))
    assert not np.array_equal(keep(0), masks(shape, 0.25, 8, backend)(0))  # another seed, other masks
    assert not np.array_equal(keep(0)[0], keep(0)[1])  # and each layer its own


def test_masks_look_like_independent_draws():
    """The dropped fraction is p, and neither neighbouring positions nor consecutive updates agree more
    than independent draws would (tolerances: about 5 standard errors)."""
    p, shape = 0.1, (2, 64, 64, 64)
    keep = masks(shape, p, 0, "jax")
    a, b = keep(0) == 0, keep(1) == 0
    n = a.size
    assert abs(a.mean() - p) < 5 * np.sqrt(p * (1 - p) / n)
    for x, y in ((a, b), (a.ravel()[1:], a.ravel()[:-1]), (a[:, 1:], a[:, :-1]), (a[1], a[0])):
        assert abs(np.corrcoef(x.ravel(), y.ravel())[0, 1]) < 5 / np.sqrt(x.size)


def test_a_seed_of_any_size_works():
    keep = masks((3, 5), 0.5, 2**70 + 3, "jax")
    assert keep(4).shape == (3, 5) and np.array_equal(keep(4), keep(4))
