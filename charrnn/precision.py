"""Mixed precision: matrix products with bfloat16 inputs and a float32 result.

PyTensor has no bfloat16 dtype, so a bfloat16 product is an Op of its own on float32 tensors,
BF16Dot. With JAX it rounds both inputs to bfloat16 and accumulates in float32
(`jnp.dot(..., preferred_element_type=float32)`: what GPUs train in, and what XLA ran twice as fast
as float32 on the development machine's Zen 4 CPU, which has AVX-512 BF16); every other backend
computes the exact float32 product, so a graph built for bfloat16 builds and runs anywhere. Its
gradient is two more such products (dA = g·Bᵀ, dB = Aᵀ·g), as torch.autocast computes them.
Everything around the products (parameters, optimizer state, gate nonlinearities, the loss) stays
float32.

`auto`, train's default, is bfloat16 where the hardware multiplies it natively and the products run
in JAX, and float32 everywhere else (`resolve`).

The JAX and Numba implementations are registered when charrnn.backend first compiles for those
backends (`register`), so importing charrnn never imports JAX or Numba's dispatchers.
"""
import functools
from pathlib import Path

import numpy as np
import pytensor.tensor as pt
from pytensor.graph.basic import Apply
from pytensor.graph.op import Op

PRECISIONS = ("auto", "float32", "bfloat16")  # --precision's choices
BFLOAT16_CPU_FLAGS = {"avx512_bf16", "amx_bf16"}  # /proc/cpuinfo's flags of x86 CPUs that multiply bfloat16


class BF16Dot(Op):
    """(..., K)·(K, N) of float32 tensors (a (M, K) matrix or a (T, B, K) sequence times a matrix),
    computed from bfloat16-rounded inputs with a float32 result under JAX, and as the exact float32
    product elsewhere. A sequence stays (T, B, K): flattened into rows, its batch axis would merge
    with time, and a batch split over devices (devices.py) could not stay split.

    transpose_a: the sum over rows a weight gradient is, aᵀ·b of (..., K) and (..., N) tensors with the
    same leading axes (all of them summed over): (K, N). XLA's CPU backend multiplies bfloat16
    natively only when the first operand's summed axis is its last. A transposed matrix it would
    multiply in float32 (from the rounded inputs, at half the speed); a (T, B) sequence summed over
    both axes it rearranges into that form itself, so a sequence is passed as it is."""

    __props__ = ("transpose_a",)

    def __init__(self, transpose_a=False):
        self.transpose_a = transpose_a

    def make_node(self, a, b):
        a, b = pt.as_tensor_variable(a), pt.as_tensor_variable(b)
        if a.type.ndim < 2 or a.type.dtype != "float32" or b.type.dtype != "float32" or (
                b.type.ndim != (a.type.ndim if self.transpose_a else 2)):
            raise TypeError(f"BF16Dot multiplies float32 matrices (or sequences by a matrix), not {a.type} and "
                            f"{b.type}")
        rows = a.type.shape[-1:] if self.transpose_a else a.type.shape[:-1]
        return Apply(self, [a, b], [pt.tensor(dtype="float32", shape=(*rows, b.type.shape[-1]))])

    def perform(self, node, inputs, output_storage):
        a, b = inputs
        if self.transpose_a:  # the exact float32 product
            output_storage[0][0] = np.dot(a.reshape(-1, a.shape[-1]).T, b.reshape(-1, b.shape[-1]))
        else:
            output_storage[0][0] = np.dot(a, b)

    def infer_shape(self, *args):
        # PyTensor 3.0 passes (fgraph, node, shapes); 3.3 passes (node, shapes) and warns about fgraph
        shape_a, shape_b = args[-1]
        return [(*(shape_a[-1:] if self.transpose_a else shape_a[:-1]), shape_b[-1])]

    def pullback(self, inputs, outputs, cotangents):
        a, b = inputs
        (g,) = cotangents
        g = pt.cast(g, "float32")
        if self.transpose_a:  # y = aᵀ·b: da = b·gᵀ, db = a·g
            return [bf16_dot(b, g.T), bf16_dot(a, g)]
        return [pt.specify_shape(bf16_dot(g, b.T), a.type.shape), pt.specify_shape(bf16_dot_t(a, g), b.type.shape)]


bf16_dot, bf16_dot_t = BF16Dot(), BF16Dot(transpose_a=True)


def dot(a, b, precision="float32"):
    """a·b for a (..., K) tensor and a (K, N) matrix b, in `precision`: pt.dot (pt.matmul for a
    sequence, which PyTensor flattens to one product on one device and which stays one product per
    device for a batch split over devices), or BF16Dot of the float32 operands."""
    if precision == "float32":
        return pt.dot(a, b) if pt.as_tensor_variable(a).type.ndim <= 2 else pt.matmul(a, b)
    return bf16_dot(*_bfloat16_operands(precision, a, b))


def dot_t(a, b, precision="float32", rows=None):
    """aᵀ·b, summed over the rows of (..., K) and (..., N) tensors (a weight gradient), in `precision`:
    pt.dot of the tensors as rows (`rows` flattens a sequence, in the order a batch split over
    devices needs), or BF16Dot's transposing variant of them as they are."""
    if precision == "float32":
        rows = rows or (lambda v: v.reshape((-1, v.shape[-1])))
        return pt.dot(rows(a).T, rows(b))
    return bf16_dot_t(*_bfloat16_operands(precision, a, b))


def _bfloat16_operands(precision, *operands):
    """The operands as float32 tensors for BF16Dot, once `precision` (not float32) is bfloat16."""
    if precision != "bfloat16":
        raise ValueError(f"a product's precision is float32 or bfloat16 (see resolve), not {precision!r}")
    return [pt.cast(pt.as_tensor_variable(v), "float32") for v in operands]


def resolve(precision, backend):
    """The products' precision, float32 or bfloat16, that `precision` means with `backend`: "auto"
    is bfloat16 with the jax backend on hardware that multiplies bfloat16 natively, else float32."""
    if precision != "auto":
        return precision
    return "bfloat16" if backend == "jax" and native_bfloat16() else "float32"


@functools.cache
def native_bfloat16():
    """Whether JAX's default device multiplies bfloat16 natively (multiplies_bfloat16)."""
    import jax

    return multiplies_bfloat16(jax.devices()[0], cpu_flags())


def multiplies_bfloat16(device, flags):
    """Whether a JAX `device` multiplies bfloat16 natively: a TPU, an NVIDIA GPU from Ampere on
    (compute capability 8.0), or a CPU whose feature `flags` (cpu_flags) include AVX-512 BF16 or
    AMX. Elsewhere XLA would emulate bfloat16, slower than float32; unknown hardware counts as not."""
    if device.platform == "tpu":
        return True
    if device.platform == "gpu":
        major = str(getattr(device, "compute_capability", "")).split(".")[0]
        return major.isdigit() and int(major) >= 8
    return device.platform == "cpu" and bool(flags & BFLOAT16_CPU_FLAGS)


def cpu_flags(cpuinfo="/proc/cpuinfo"):
    """The first CPU's feature flags, as Linux lists them; empty where there is no such file."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        name, _, value = line.partition(":")
        if name.strip() == "flags":
            return set(value.split())
    return set()


def describe(precision, backend):
    """How the products of `precision` (auto resolved here) are computed with `backend`, for the line
    saying what is compiled: '' for float32."""
    precision = resolve(precision, backend)
    if precision == "float32":
        return ""
    if backend == "jax":
        return " (matrix products in bfloat16, accumulated in float32)"
    return f" (bfloat16 products run as exact float32 ones on the {backend} backend; jax computes them in bfloat16)"


_registered = set()


def register(backend):
    """Give BF16Dot its implementation in `backend`'s dispatcher ("jax", "numba"; the C backend
    runs `perform`), once per process, before anything is compiled or unpickled for it."""
    if backend in _registered or backend not in ("jax", "numba"):
        return
    (_register_jax if backend == "jax" else _register_numba)()
    _registered.add(backend)


def _register_jax():
    import jax
    import jax.numpy as jnp
    from pytensor.link.jax.dispatch import jax_funcify

    @jax_funcify.register(BF16Dot)
    def jax_funcify_BF16Dot(op, **kwargs):
        # Inside a scan, XLA hoists the cast of the loop-invariant weights out of the while loop
        # (the loop carries bf16 W_h): only the state is rounded at each step.
        def bf16_dot(a, b):
            return jnp.dot(a.astype(jnp.bfloat16), b.astype(jnp.bfloat16), preferred_element_type=jnp.float32)

        def bf16_dot_t(a, b):  # summed over every axis but the last
            lead = tuple(range(a.ndim - 1))
            return jax.lax.dot_general(a.astype(jnp.bfloat16), b.astype(jnp.bfloat16), ((lead, lead), ((), ())),
                                       preferred_element_type=jnp.float32)

        return bf16_dot_t if op.transpose_a else bf16_dot


def _register_numba():
    from pytensor.link.numba.dispatch import basic as numba_basic

    @numba_basic.register_funcify_default_op_cache_key(BF16Dot)
    def numba_funcify_BF16Dot(op, node, **kwargs):
        # Numba has no bfloat16: the exact float32 product (without this, PyTensor would run
        # `perform` in object mode, and say so in a warning).
        # Both operands contiguous: a gradient's is a transposed view, and Numba 0.65 warns of the slower product.
        @numba_basic.numba_njit
        def bf16_dot(a, b):  # Numba's np.dot takes matrices: a (T, B, K) sequence as rows, and back
            rows = np.dot(np.ascontiguousarray(a).reshape((-1, a.shape[-1])), np.ascontiguousarray(b))
            return rows.reshape(a.shape[:-1] + (b.shape[1],))

        @numba_basic.numba_njit
        def bf16_dot_t(a, b):
            rows_a = np.ascontiguousarray(a).reshape((-1, a.shape[-1]))
            return np.dot(np.ascontiguousarray(rows_a.T), np.ascontiguousarray(b).reshape((-1, b.shape[-1])))

        return (bf16_dot_t if op.transpose_a else bf16_dot), 1
