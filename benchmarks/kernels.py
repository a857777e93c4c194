"""The matrix products an LSTM 2x256 step and a sampled character are made of, timed alone in JAX
(what charrnn's default backend runs), NumPy (OpenBLAS) and PyTorch, in the same run: the ceiling
under train_speed.py and sample_speed.py.

Training multiplies (64, 256) by (256, 1024) inside the time loop and (4096, 256) by (256, 1024),
or its transposes, outside it; sampling multiplies (1, 256) by (256, 1024), three times per
character. Printed: GFLOPS for each product, microseconds for the sampling one, and each
library's ratio to NumPy. JAX runs the small products as charrnn does, 64 per call inside one
scan (a call of its own costs tens of microseconds); NumPy and PyTorch are called once per product.

    pip install -e '.[bench]'
    python benchmarks/kernels.py [--repeat 200]

Not part of the test suite.
"""
import argparse
import os
import time

import numpy as np

import charrnn.backend  # noqa: F401  (the process's heap setting, as charrnn runs)

# name -> (shape of a, shape of b, transpose a first)
PRODUCTS = {
    "in the loop: (64,256) x (256,1024)": ((64, 256), (256, 1024), False),
    "input terms: (4096,256) x (256,1024)": ((4096, 256), (256, 1024), False),
    "weight gradient: (4096,256)^T x (4096,1024)": ((4096, 256), (4096, 1024), True),
    "sampling: (1,256) x (256,1024)": ((1, 256), (256, 1024), False),
}


def best_time(fn, repeat):
    """Median seconds of one call, over `repeat` calls after a warm-up."""
    for _ in range(10):
        fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=200)
    args = parser.parse_args()
    import jax
    import jax.numpy as jnp
    import torch

    torch.set_num_threads(os.cpu_count())
    rng = np.random.default_rng(0)
    print(f"{os.cpu_count()} cores; jax {jax.__version__}, numpy {np.__version__}, torch {torch.__version__}")
    print(f"{'product':46} {'numpy':>14} {'jax':>14} {'torch':>14}")
    for name, (shape_a, shape_b, transpose) in PRODUCTS.items():
        a, b = rng.random(shape_a, dtype=np.float32), rng.random(shape_b, dtype=np.float32)
        ja, jb, ta, tb = jnp.asarray(a), jnp.asarray(b), torch.from_numpy(a), torch.from_numpy(b)
        if shape_a[0] <= 64:  # 64 products per call, one after another in a scan
            stack = jnp.asarray(rng.random((64, *shape_a), dtype=np.float32))
            jdot = jax.jit(lambda x, y: jax.lax.scan(lambda c, x_t: (c, x_t @ y), 0.0, x)[1])
            jax_seconds = best_time(lambda: jdot(stack, jb).block_until_ready(), args.repeat) / 64
        else:
            jdot = jax.jit(lambda x, y: x.T @ y) if transpose else jax.jit(lambda x, y: x @ y)
            jax_seconds = best_time(lambda: jdot(ja, jb).block_until_ready(), args.repeat)
        seconds = {
            "numpy": best_time(lambda: a.T @ b if transpose else a @ b, args.repeat),
            "jax": jax_seconds,
            "torch": best_time(lambda: ta.T @ tb if transpose else ta @ tb, args.repeat),
        }
        flops = 2 * np.prod(shape_a) * shape_b[1]
        cells = []
        for lib, s in seconds.items():
            value = f"{s * 1e6:.1f} us" if shape_a[0] == 1 else f"{flops / s / 1e9:.0f} GFLOPS"
            cells.append(f"{value} {seconds['numpy'] / s:.2f}x" if lib != "numpy" else value)
        print(f"{name:46} {cells[0]:>14} {cells[1]:>14} {cells[2]:>14}", flush=True)


if __name__ == "__main__":
    main()
