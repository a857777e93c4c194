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
from charrnn.corpus import Vocab, as_column, read_text, sequences
from charrnn.model import ModelConfig, init_params, shared_params
from charrnn.train import TrainConfig, compile_train_step

DEFAULT_CORPUS = Path(__file__).resolve().parents[2] / "shared" / "data" / "tinyshakespeare.txt"


def prepare(backend, ids, vocab, cfg):
    params = shared_params(init_params(ModelConfig(vocab_size=len(vocab)), seed=0))
    start = time.perf_counter()
    step = compile_train_step(params, cfg.seq_len, backend)
    inputs, targets = sequences(ids, cfg.seq_len)
    lr = np.asarray(cfg.lr, dtype=np.float32)
    step(as_column(inputs[0]), as_column(targets[0]), lr)
    return step, inputs, targets, lr, time.perf_counter() - start


def timed_round(step, inputs, targets, lr, offset, n):
    start = time.perf_counter()
    for i in range(offset, offset + n):
        step(as_column(inputs[i]), as_column(targets[i]), lr)
    return n * inputs.shape[1] / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("corpus", nargs="?", default=str(DEFAULT_CORPUS))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=3000, help="updates per round")
    args = parser.parse_args()
    text = read_text(args.corpus)
    vocab = Vocab.from_text(text)
    ids, cfg = vocab.encode(text), TrainConfig()
    runs = {name: prepare(name, ids, vocab, cfg) for name in BACKENDS}
    rates = {name: [] for name in BACKENDS}
    for r in range(args.rounds):
        for name, (step, inputs, targets, lr, _) in runs.items():
            rates[name].append(timed_round(step, inputs, targets, lr, 1 + r * args.steps, args.steps))
    ref = statistics.median(rates["c"])
    print(f"lesson-6 configuration: hidden 256, seq-len 8, batch 1, float32; {args.rounds} rounds of {args.steps} updates")
    print(f"{'backend':8} {'chars/s (median)':>17} {'x c':>6} {'first step s':>13}")
    for name, values in rates.items():
        med = statistics.median(values)
        print(f"{name:8} {med:17,.0f} {med / ref:6.2f} {runs[name][4]:13.1f}")


if __name__ == "__main__":
    main()
