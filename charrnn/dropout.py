"""Dropout masks made inside the compiled update, from (rng_seed, update) alone.

A counter-based generator, as JAX's threefry and NumPy's Philox are: the random bits of element i
of update s's masks are a hash of i under a key hashed from (rng_seed, s), so the host sends only
the update's number, and a resumed run (or the divergence guard going back) makes the same masks
again without any generator state in the checkpoint. The hash is MurmurHash3's 32-bit finalizer
(a bijection of uint32 with good avalanche) written in PyTensor's own integer operations, so every
backend computes the same masks. PyTensor's random variables, the other way, become jax.random's
threefry in JAX: 20 ms for the default network's (2, 64, 64, 256) masks on the 2-core development
machine, where this hash took 0.5 ms and NumPy, drawing them on the host before, 4.5 ms
(`python benchmarks/overhead.py --parts c`).
"""
import numpy as np
import pytensor.tensor as pt

GOLDEN = 0x9E3779B1  # 2^32 / golden ratio, odd: i -> i * GOLDEN is a bijection that spreads indices


def _u32(value):
    return pt.constant(np.uint32(value))


def fmix32(h):
    """MurmurHash3's finalizer on uint32 tensors (x >> k written as x // 2^k: PyTensor has no shifts)."""
    h = h ^ (h // _u32(1 << 16))
    h = _mul32(h, 0x85EBCA6B)
    h = h ^ (h // _u32(1 << 13))
    h = _mul32(h, 0xC2B2AE35)
    return h ^ (h // _u32(1 << 16))


def _mul32(h, factor):
    """h * factor modulo 2^32. The mask is a no-op in uint32, but PyTensor's Numba backend computes
    a fused chain of uint32 operations in 64 bits, and there it keeps the product's low 32 bits."""
    return (h * _u32(factor)) & _u32(0xFFFFFFFF)


def update_key(rng_seed, step):
    """A uint32 key for update `step` (a uint32 scalar tensor) of the run seeded `rng_seed` (an int >= 0)."""
    words = np.random.SeedSequence([rng_seed, 1]).generate_state(2)  # any int >= 0, all of it mixed in
    return fmix32(fmix32(step ^ _u32(words[0])) ^ _u32(words[1]))


def keep_multipliers(shape, p, rng_seed, step, dtype):
    """Inverted-dropout multipliers of `shape`: 0 with probability p, else 1/(1-p), a function of
    (rng_seed, step, position) only."""
    index = pt.arange(int(np.prod(shape)), dtype="uint32").reshape(shape)
    bits = fmix32(_mul32(index, GOLDEN) ^ update_key(rng_seed, step))
    threshold = min(round(p * 2**32), 2**32 - 1)  # P(bits < threshold) = p
    return pt.cast(bits >= _u32(threshold), dtype) * np.asarray(1 / (1 - p), dtype=dtype)
