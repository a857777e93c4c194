"""Which PyTensor backend compiles charrnn's functions, and compiling with it.

charrnn computes in float32 throughout (what every backend runs fastest), so floatX is set here,
before any graph is built: a float64 constant would otherwise promote a whole product.
"""
import ctypes
import ctypes.util
import hashlib
import logging
import os
import pickle
import tempfile
import warnings
from pathlib import Path

import pytensor
from pytensor.compile.mode import get_mode

from charrnn import precision

pytensor.config.floatX = "float32"

# charrnn name -> PyTensor mode. "jax" is the default: it compiles a training step in 3-7 s where
# C takes 50-80 s and Numba 2-3 minutes, and it trained fastest in benchmarks/train_speed.py.
# It is also the way to a GPU (pip install 'charrnn[gpu]').
BACKENDS = {"jax": "JAX", "c": "CVM", "numba": "NUMBA"}
DEFAULT_BACKEND = "jax"

# Without a system BLAS the C backend says once that it calls NumPy's BLAS through the C-API;
# that is the configuration charrnn was measured in, not something a user must act on.
logging.getLogger("pytensor.tensor.blas").setLevel(logging.ERROR)


def keep_freed_memory():
    """Let glibc keep freed memory for the next call instead of handing it back to the kernel.

    XLA takes each call's temporaries as one block from malloc (134 MB for the LSTM 2x256 training
    step). glibc serves a block that large with a fresh mmap and unmaps it on free, so every call
    faulted all of it in again: 37,000 page faults per step, about a sixth of the step's time.
    From one heap (threads get no arenas of their own, whose heaps cap at 64 MB), with no mmap for
    large blocks and no trimming, the block is reused. The cost is memory kept instead of handed
    back: a first `charrnn train` of a 100 MB corpus peaked at 836 MB against 752 MB before.
    Not glibc (musl, macOS): nothing to do.
    """
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c")).mallopt
    except (OSError, AttributeError, TypeError):
        return False
    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, M_ARENA_MAX = -1, -3, -8
    most = 2**31 - 1  # mallopt takes an int
    return all(mallopt(option, value) == 1
               for option, value in ((M_ARENA_MAX, 1), (M_MMAP_THRESHOLD, most), (M_TRIM_THRESHOLD, most)))


keep_freed_memory()  # before JAX starts the threads that allocate


def cache_dir():
    """charrnn's directory in the user's cache: $CHARRNN_CACHE_DIR, else $XDG_CACHE_HOME/charrnn
    (ignored unless absolute, as the XDG spec says), else ~/.cache/charrnn."""
    if os.environ.get("CHARRNN_CACHE_DIR"):
        return Path(os.environ["CHARRNN_CACHE_DIR"])
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    return (Path(xdg) if os.path.isabs(xdg) else Path.home() / ".cache") / "charrnn"


def compile_function(inputs, outputs, updates=None, backend=DEFAULT_BACKEND):
    """pytensor.function in the chosen backend, trusting inputs (callers pass exact dtypes and shapes)."""
    if backend == "jax":
        _setup_jax()
    precision.register(backend)  # BF16Dot's implementation in the backend's dispatcher
    with warnings.catch_warnings():
        # Raised once per process when no system BLAS links; the C ops then use NumPy's BLAS.
        warnings.filterwarnings("ignore", message="PyTensor could not link to a BLAS")
        fn = pytensor.function(inputs, outputs, updates=updates, mode=_mode(backend))
    fn.trust_input = True
    return fn


def cached_function(key, build, params, backend=DEFAULT_BACKEND):
    """The function `build()` compiles, kept pickled in the cache directory under `key` (what
    determines the graph: kind, configuration, shapes). A later process loads it there, skipping
    PyTensor's graph rewriting (about a second per graph: what a warm `predict` waits for) and,
    with JAX, finds the compiled code in JAX's cache. The loaded function gets its own copies of the
    shared variables; they take the values of `params` (by name), so use it for fixed weights."""
    if backend != "jax":  # measured with JAX only
        return build()
    import jax

    tag = repr((key, backend, pytensor.__version__, jax.__version__, _source_digest()))
    path = cache_dir() / "functions" / f"{hashlib.sha256(tag.encode()).hexdigest()[:32]}.pkl"
    _setup_jax()
    precision.register(backend)  # unpickling links the function again
    try:
        fn = pickle.loads(path.read_bytes())
    except Exception:  # missing, unwritten, or from another environment: compile afresh
        fn = build()
        _save(path, fn)
    for var in fn.get_shared():
        if var.name in params:
            var.set_value(params[var.name].get_value(borrow=True), borrow=True)
    fn.trust_input = True
    return fn


def _save(path, fn):
    """Pickle `fn` to `path`. A cache that cannot be written, or a function that does not pickle,
    only costs compile time later."""
    try:
        data = pickle.dumps(fn)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(path, lambda f: f.write(data))
    except (OSError, pickle.PicklingError, TypeError, AttributeError):
        pass


def write_atomically(path, write, public=False, durable=False):
    """Call write(f) on a temporary file in `path`'s directory, then rename it to `path`, so a
    reader never sees half a file; the temporary file goes on any failure. public: the file gets
    an ordinary new file's permissions (mkstemp makes it private); durable: flushed to disk
    before the rename, so a crash leaves the old file or the whole new one."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        if public:
            os.fchmod(fd, 0o666 & ~umask())
        with os.fdopen(fd, "wb") as f:
            write(f)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def umask():
    """The process umask (reading it means setting it: set it back at once)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _source_digest():
    """A hash of charrnn's graph-building code, so a cached function never outlives a change to it."""
    here = Path(__file__).parent
    sources = ("cells.py", "model.py", "precision.py", "sample.py", "reading.py", "backend.py")
    return hashlib.sha256(b"".join((here / name).read_bytes() for name in sources)).hexdigest()


def device(backend):
    """Where the backend's functions run, in words: "cpu", or the accelerator JAX found ("gpu NVIDIA H200")."""
    if backend != "jax":
        return "cpu"
    import jax

    first = jax.devices()[0]
    return "cpu" if first.platform == "cpu" else f"{first.platform} {first.device_kind}"


_jax_ready = False


def _setup_jax():
    """Once per process: float32 products in full float32, and JAX's persistent compilation cache
    in charrnn's cache directory, so a second run (or a second `predict`) loads compiled code
    instead of compiling again."""
    global _jax_ready
    if _jax_ready:
        return
    import jax

    # PyTensor sums float32 in a float64 accumulator and indexes in int64; JAX (x64 off, as PyTensor
    # sets it for float32) keeps 32 bits and says so once per traced function. That is what charrnn wants.
    warnings.filterwarnings("ignore", message="Explicitly requested dtype (float|int)64", category=UserWarning)
    # float32 products in float32: JAX's default on recent GPUs is TensorFloat32 (10 bits of mantissa),
    # which would make a GPU's float32 differ from the CPU's; --precision bfloat16 is the fast mode
    # (BF16Dot casts its inputs itself, so this setting does not touch it).
    jax.config.update("jax_default_matmul_precision", "highest")
    try:
        path = cache_dir() / "jax"
        path.mkdir(parents=True, exist_ok=True)
        jax.config.update("jax_compilation_cache_dir", str(path))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    except OSError:
        pass  # an unwritable cache only costs compile time
    _jax_ready = True


def _mode(backend):
    mode = get_mode(BACKENDS[backend])
    if backend == "c" and not pytensor.config.blas__ldflags:
        # With no BLAS linked, PyTensor's C Gemm/Gemv loop over elements; a plain Dot calls
        # numpy.dot (NumPy's own BLAS). 1.3x on the lesson-6 step (benchmarks/backends.py).
        mode = mode.excluding("BlasOpt")
    return mode
