"""Which PyTensor backend compiles charrnn's functions, and compiling with it."""
import logging
import warnings

import pytensor
from pytensor.compile.mode import get_mode

# charrnn name -> PyTensor mode. "c" is the default: on the lesson-6 configuration it trained
# faster than Numba and compiles cold in about 25 s against Numba's 70 s (benchmarks/backends.py).
BACKENDS = {"c": "CVM", "numba": "NUMBA"}
DEFAULT_BACKEND = "c"

# Without a system BLAS the C backend says once that it calls NumPy's BLAS through the C-API;
# that is the configuration charrnn was measured in, not something a user must act on.
logging.getLogger("pytensor.tensor.blas").setLevel(logging.ERROR)


def compile_function(inputs, outputs, updates=None, backend=DEFAULT_BACKEND):
    """pytensor.function in the chosen backend, trusting inputs (callers pass exact dtypes and shapes)."""
    with warnings.catch_warnings():
        # Raised once per process when no system BLAS links; the C ops then use NumPy's BLAS.
        warnings.filterwarnings("ignore", message="PyTensor could not link to a BLAS")
        fn = pytensor.function(inputs, outputs, updates=updates, mode=_mode(backend))
    fn.trust_input = True
    return fn


def _mode(backend):
    mode = get_mode(BACKENDS[backend])
    if backend == "c" and not pytensor.config.blas__ldflags:
        # With no BLAS linked, PyTensor's C Gemm/Gemv loop over elements; a plain Dot calls
        # numpy.dot (NumPy's own BLAS). 1.3x on the lesson-6 step (benchmarks/backends.py).
        mode = mode.excluding("BlasOpt")
    return mode
