"""Start-up time: wall seconds of a fresh `charrnn predict --seed x --length 1` process, cold (empty
compile caches) and warm (the caches the cold run filled), and of a first `charrnn train` process
up to its first update.

The model is the default configuration, from a checkpoint written by `charrnn train CORPUS
--max-steps 1` into a temporary directory. "Cold" points both charrnn's cache (CHARRNN_CACHE_DIR,
which holds JAX's compiled code) and PyTensor's compile directory (C and Numba modules) at empty
temporary directories, as on a new machine; "warm" runs again with the same directories.

    python benchmarks/startup.py [CORPUS] [--backends jax c] [--repeat 3]

Not part of the test suite.
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DEFAULT_CORPUS = Path(__file__).resolve().parents[2] / "shared" / "data" / "tinyshakespeare.txt"


def timed(cmd, env, until=None):
    """Wall seconds of a process; with `until`, up to the first stderr line containing it."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if until is None:
        proc.communicate()
    else:
        for line in proc.stderr:
            if until in line:
                break
        elapsed = time.perf_counter() - start
        proc.kill()
        proc.wait()
        return elapsed
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed")
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("corpus", nargs="?", default=str(DEFAULT_CORPUS))
    parser.add_argument("--backends", nargs="+", default=["jax"])
    parser.add_argument("--repeat", type=int, default=3, help="warm runs (the median is printed)")
    args = parser.parse_args()
    charrnn = [sys.executable, "-m", "charrnn"]
    print(f"{os.cpu_count()} cores; python {sys.version.split()[0]}")
    print(f"{'backend':8} {'predict cold s':>15} {'predict warm s':>15} {'train: first update, cold s':>28}")
    with tempfile.TemporaryDirectory() as tmp:
        for backend in args.backends:
            caches = {"CHARRNN_CACHE_DIR": f"{tmp}/{backend}-cache",
                      "PYTENSOR_FLAGS": f"base_compiledir={tmp}/{backend}-pytensor"}
            env = {**os.environ, **caches}
            run = f"{tmp}/{backend}-run"
            train = [*charrnn, "train", args.corpus, "--max-steps", "3", "--val-frac", "0", "--out", run,
                     "--backend", backend]
            first_update = timed(train, env, until="first update done")
            subprocess.run([*train, "-q"], env=env, check=True)  # finish a checkpoint for predict
            predict = [*charrnn, "predict", "--checkpoint", f"{run}/latest.npz", "--seed", "x", "--length", "1",
                       "--backend", backend]
            cold_env = {**env, "CHARRNN_CACHE_DIR": f"{tmp}/{backend}-cache2",
                        "PYTENSOR_FLAGS": f"base_compiledir={tmp}/{backend}-pytensor2"}
            cold = timed(predict, cold_env)
            warm = statistics.median(timed(predict, cold_env) for _ in range(args.repeat))
            print(f"{backend:8} {cold:15.1f} {warm:15.1f} {first_update:28.1f}", flush=True)


if __name__ == "__main__":
    main()
