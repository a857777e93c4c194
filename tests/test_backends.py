"""Backends agree, the cache of compiled functions never serves stale weights, and memory is reused."""
import platform
import subprocess
import sys

import numpy as np
import pytest

from charrnn import checkpoint, configs
from charrnn.model import ModelConfig, init_params, shared_params
from charrnn.sample import Sampler

GRU = ModelConfig(vocab_size=7, hidden=8, layers=2)


def test_a_checkpoint_predicts_the_same_on_every_backend(trained_run):
    """A model trained with the default backend (JAX) predicts identically with the C backend."""
    params, meta = checkpoint.load(trained_run / "latest.npz")
    context = meta["train"]["seq_len"]
    seed = [0, 3, 1, 2, 4, 1]
    jax, c = (Sampler(shared_params(params), configs.model_config(meta), context, backend)
              for backend in ("jax", "c"))
    (best_j, prob_j), (best_c, prob_c) = jax.next_chars(seed), c.next_chars(seed)
    assert np.array_equal(best_j, best_c)
    np.testing.assert_allclose(prob_j, prob_c, rtol=1e-5)
    assert np.array_equal(jax.generate(seed, 40, 0.7, 1), c.generate(seed, 40, 0.7, 1))


def test_carried_state_generation_is_the_same_on_every_backend():
    params = init_params(GRU, seed=3)
    jax, c = (Sampler(shared_params(params), GRU, None, backend) for backend in ("jax", "c"))
    np.testing.assert_allclose(jax.next_chars([1, 2, 3, 4])[1], c.next_chars([1, 2, 3, 4])[1], rtol=1e-5)
    assert np.array_equal(jax.generate([1, 2], 300, 1.0, 5), c.generate([1, 2], 300, 1.0, 5))


def test_cached_functions_take_the_weights_they_are_given(cache_dir):
    a, b = init_params(GRU, seed=1), init_params(GRU, seed=2)
    first = Sampler(shared_params(a), GRU, cache=True).next_chars([1, 2, 3])[1]
    saved = list((cache_dir / "functions").glob("*.pkl"))
    assert saved  # compiled once, kept for the next process
    loaded = Sampler(shared_params(b), GRU, cache=True).next_chars([1, 2, 3])[1]  # from the cache
    assert sorted((cache_dir / "functions").glob("*.pkl")) == sorted(saved)
    fresh = Sampler(shared_params(b), GRU).next_chars([1, 2, 3])[1]
    np.testing.assert_array_equal(loaded, fresh)
    assert not np.allclose(first, loaded)


def test_a_corrupt_cache_entry_is_compiled_again(cache_dir):
    params = init_params(GRU, seed=4)
    want = Sampler(shared_params(params), GRU, cache=True).generate([1], 20, 1.0, 0)
    for path in (cache_dir / "functions").glob("*.pkl"):
        path.write_bytes(b"not a pickle")
    assert np.array_equal(Sampler(shared_params(params), GRU, cache=True).generate([1], 20, 1.0, 0), want)


def test_an_unwritable_cache_only_costs_compile_time(tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("CHARRNN_CACHE_DIR", str(blocker / "cache"))  # cannot be created
    params = init_params(GRU, seed=6)
    got = Sampler(shared_params(params), GRU, cache=True).generate([1, 2], 20, 1.0, 0)
    assert np.array_equal(got, Sampler(shared_params(params), GRU).generate([1, 2], 20, 1.0, 0))
    assert blocker.read_text() == "not a directory"


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's malloc only")
def test_freed_blocks_are_reused_without_page_faults():
    """XLA's per-call temporaries (134 MB for the LSTM step, allocated on its own threads) come back
    as the same memory on the next call instead of being faulted in again page by page."""
    script = """
import ctypes, ctypes.util, resource, threading
import charrnn.backend

libc = ctypes.CDLL(ctypes.util.find_library("c"))
libc.malloc.restype, libc.free.argtypes = ctypes.c_void_p, [ctypes.c_void_p]

def faults():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    block = libc.malloc(134 << 20)  # as XLA takes its temporaries
    ctypes.memset(block, 1, 134 << 20)
    libc.free(block)
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

counts = []
worker = threading.Thread(target=lambda: counts.extend([faults(), faults()]))
worker.start()
worker.join()
print(*counts)
"""
    first, second = map(int, subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                                            check=True).stdout.split())
    assert first > 30_000  # the first call faults its pages in (4 kB each)
    assert second < first / 10
