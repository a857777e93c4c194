"""Training throughput of the lesson-6 configuration in each PyTensor backend charrnn offers.

Each backend trains the same network on the same sequences, in alternating rounds within one run
(this machine is shared and noisy), and the script prints characters per second, the ratio to the
C backend measured in the same run, and the time to the first finished step (compile + first call,
which includes Numba's lazy compilation).

    python benchmarks/backends.py [CORPUS] [--rounds 5] [--steps 3000]

Not part of the test suite.
"""
import argparse
import statistics
import time
from pathlib import Path

import numpy as np

from charrnn.backend import BACKENDS
from charrnn.corpus import BatchStream, Vocab, read_text
from charrnn.model import init_params, shared_params
from charrnn.configs import build_configs
from charrnn.train import compile_train_step

DEFAULT_CORPUS = Path(__file__).resolve().parents[2] / "shared" / "data" / "tinyshakespeare.txt"


def prepare(backend, ids, vocab):
    model_cfg, cfg = build_configs(len(vocab), "lesson6", backend=backend)
    params = shared_params(init_params(model_cfg, seed=0))
    start = time.perf_counter()
    step = compile_train_step(params, {}, model_cfg, cfg)
    stream = BatchStream(ids, cfg.batch_size, cfg.seq_len)
    lr = np.asarray(cfg.lr, dtype=np.float32)
    states = np.zeros((model_cfg.state_size, 1, model_cfg.hidden), dtype=np.float32)
    step(*stream.batch(0), states, lr)
    return (step, stream, states, lr), time.perf_counter() - start


def timed_round(run, offset, n):
    step, stream, states, lr = run
    start = time.perf_counter()
    for k in range(offset, offset + n):
        step(*stream.batch(k), states, lr)  # the lesson: every sequence from a zero state
    return n * stream.T / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("corpus", nargs="?", default=str(DEFAULT_CORPUS))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=3000, help="updates per round")
    args = parser.parse_args()
    text = read_text(args.corpus)
    vocab = Vocab.from_text(text)
    ids = vocab.encode(text)
    runs = {name: prepare(name, ids, vocab) for name in BACKENDS}
    rates = {name: [] for name in BACKENDS}
    for r in range(args.rounds):
        for name, (run, _) in runs.items():
            rates[name].append(timed_round(run, 1 + r * args.steps, args.steps))
    ref = statistics.median(rates["c"])
    print(f"lesson-6 configuration: hidden 256, seq-len 8, batch 1, float32; {args.rounds} rounds of {args.steps} updates")
    print(f"{'backend':8} {'chars/s (median)':>17} {'x c':>6} {'first step s':>13}")
    for name, values in rates.items():
        med = statistics.median(values)
        print(f"{name:8} {med:17,.0f} {med / ref:6.2f} {runs[name][1]:13.1f}")


if __name__ == "__main__":
    main()
