"""Training throughput of this checkout against another checkout of charrnn (an earlier commit),
in alternating worker processes: for changes whose effect is smaller than this machine's noise
between runs.

Each round starts one worker per checkout, one after the other (PYTHONPATH at the checkout, its
own empty compile cache); each worker runs train_speed.py's charrnn update (the step `charrnn
train` runs) for three timed blocks and reports the middle one. Printed: chars/s per round and
the ratio of the medians.

    git worktree add /tmp/before HEAD~1
    python benchmarks/compare_commits.py /tmp/before [--configs default lstm] [--rounds 5] [--backend jax]
    python benchmarks/compare_commits.py /tmp/before --configs sample-lstm sample-gru   # plain sampling

Not part of the test suite.
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent

WORKER = """
import sys, time
sys.path.insert(0, {benchmarks!r})
import train_speed
name, backend = sys.argv[1], sys.argv[2]
vocab, model_cfg, cfg, stream = train_speed.load_batches(train_speed.DEFAULT_CORPUS, name)
update = train_speed.charrnn_worker(vocab, model_cfg, cfg, stream, backend)
steps = train_speed.CONFIGS[name][3]
for k in range(3):
    float(update(k))
rates = []
for _ in range(3):
    start = time.perf_counter()
    for k in range(steps):
        loss = update(k)
    float(loss)  # the updates run asynchronously since issue 11
    rates.append(steps * cfg.batch_size * cfg.seq_len / (time.perf_counter() - start))
print(sorted(rates)[1])
"""


SAMPLER = """
import sys, time
import numpy as np
from charrnn.model import ModelConfig, init_params, shared_params
from charrnn.sample import Sampler
cell, backend = sys.argv[1].removeprefix("sample-"), sys.argv[2]
cfg = ModelConfig(vocab_size=65, cell=cell, hidden=256, layers=2, dropout=0.0)
sampler = Sampler(shared_params(init_params(cfg)), cfg, None, backend)
seed = np.array([1, 2, 3], np.int32)
sampler.generate(seed, 512)
rates = []
for _ in range(3):
    start = time.perf_counter()
    sampler.generate(seed, 10000)
    rates.append(10000 / (time.perf_counter() - start))
print(sorted(rates)[1])
"""


def rate(checkout, name, backend):
    """chars/s of one worker process importing charrnn from `checkout`: training, or for a name
    sample-CELL plain sampling (Sampler.generate, state carried) of a 2x256 network of that cell."""
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "PYTHONPATH": str(checkout), "CHARRNN_CACHE_DIR": cache}
        code = SAMPLER if name.startswith("sample-") else WORKER.format(benchmarks=str(HERE))
        out = subprocess.run([sys.executable, "-c", code, name, backend], env=env, capture_output=True, text=True,
                             check=True)
    return float(out.stdout.split()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("other", help="the other checkout's root directory")
    parser.add_argument("--configs", nargs="+", default=["default", "lstm"])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--backend", default="jax")
    args = parser.parse_args()
    checkouts = {"this": HERE.parent, "other": Path(args.other).resolve()}
    for name in args.configs:
        rates = {label: [] for label in checkouts}
        for _ in range(args.rounds):
            for label, checkout in checkouts.items():
                rates[label].append(rate(checkout, name, args.backend))
        ratio = statistics.median(rates["this"]) / statistics.median(rates["other"])
        print(f"{name}: " + "; ".join(f"{label} {', '.join(f'{r:,.0f}' for r in values)}"
                                      for label, values in rates.items()) + f"; ratio of medians {ratio:.2f}", flush=True)


if __name__ == "__main__":
    main()
