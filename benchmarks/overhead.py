"""The fixed cost and the host work of one training update, for several unroll factors.

(a) Fixed cost: a network of 2 layers of 8 units (almost no arithmetic), batch 64, seq 64, with and
    without dropout: milliseconds per update of charrnn's training loop (Trainer._update: updates
    started back to back, their losses read at the end, as `charrnn train` reads them at each log
    line), for each --unrolls factor. The reference is the loop before issue 11: unroll 1, each
    loss read (waited for) as soon as its update is started.
(b) Host work: the default network (GRU 2x256, dropout 0.1, batch 64, seq 64): milliseconds per
    update the host spends in Trainer._update (making the batch and starting the update, which
    then runs asynchronously), for each factor; the reference is what the host did before issue 11
    on top of that, made in the same process: drawing the update's dropout masks with NumPy (a copy
    of the old train.dropout_keep).

Each configuration is compiled once; the timed rounds then alternate between them (this machine
is shared and noisy) and the medians are printed with their ratio to the reference.

    python benchmarks/overhead.py [CORPUS] [--unrolls 1 2 4 8 16] [--rounds 5] [--updates 40]

Not part of the test suite.
"""
import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from charrnn.configs import build_configs
from charrnn.corpus import BatchStream, Vocab, read_text
from charrnn.train import Trainer

DEFAULT_CORPUS = Path(__file__).resolve().parents[2] / "shared" / "data" / "tinyshakespeare.txt"


def trainer(vocab, ids, **options):
    """A compiled Trainer on `ids` (its compile time and first update's time said)."""
    model_cfg, cfg = build_configs(len(vocab), **options)
    t = Trainer(vocab, model_cfg, cfg, tempfile.mkdtemp(prefix="overhead-"), log=lambda msg: None)
    start = time.perf_counter()
    t.compile()
    compiled = time.perf_counter()
    t.stream = BatchStream(ids, cfg.batch_size, cfg.seq_len)
    run(t, 1, read_each=True)
    print(f"  {options}: compiled in {compiled - start:.1f} s, first update {time.perf_counter() - compiled:.1f} s",
          flush=True)
    return t


def run(t, n, read_each=False, old_masks=False):
    """(wall ms per update, host ms per update) over n updates from the trainer's current place."""
    s, host, loss = t.state, 0.0, None
    start = time.perf_counter()
    for _ in range(n):
        s.position %= len(t.stream)
        begin = time.perf_counter()
        if old_masks:
            old_dropout_keep(t.model_cfg, t.cfg, s.step)
        loss = t._update()
        host += time.perf_counter() - begin
        if read_each:
            float(loss)
        s.step, s.position = s.step + 1, s.position + 1
    float(loss)
    return 1e3 * (time.perf_counter() - start) / n, 1e3 * host / n


def old_dropout_keep(model_cfg, train_cfg, step, dtype=np.float32):
    """The host-side masks charrnn drew for every update before issue 11."""
    p = model_cfg.dropout
    shape = (model_cfg.layers, train_cfg.seq_len, train_cfg.batch_size, model_cfg.hidden)
    keep = np.random.default_rng([train_cfg.rng_seed, 1, step]).random(shape, dtype=np.float32) >= p
    return [keep.astype(dtype) / np.asarray(1 - p, dtype=dtype)]


def alternate(cases, rounds, n, pick):
    """Median of `pick`(run result) per case, over `rounds` rounds that alternate the cases."""
    times = {name: [] for name in cases}
    for _ in range(rounds):
        for name, (t, kwargs) in cases.items():
            times[name].append(pick(run(t, n, **kwargs)))
    return {name: statistics.median(v) for name, v in times.items()}


def report(title, medians, reference):
    print(f"\n{title}")
    for name, ms in medians.items():
        print(f"  {name:34} {ms:8.2f} ms   {ms / medians[reference]:5.2f}x the reference")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("corpus", nargs="?", default=str(DEFAULT_CORPUS))
    parser.add_argument("--unrolls", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    parser.add_argument("--host-unrolls", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--updates", type=int, default=40, help="updates per timed round of (a)")
    args = parser.parse_args()
    text = read_text(args.corpus)
    vocab = Vocab.from_text(text)
    ids = vocab.encode(text)

    print("compiling (a): 2 layers of 8 units, batch 64, seq 64")
    for dropout in (0.0, 0.1):
        tiny = {u: trainer(vocab, ids, hidden=8, dropout=dropout, unroll=u) for u in args.unrolls}
        cases = {"reference: unroll 1, each loss read": (tiny[args.unrolls[0]], {"read_each": True})}
        cases |= {f"unroll {u}, losses read at the end": (t, {}) for u, t in tiny.items()}
        medians = alternate(cases, args.rounds, args.updates, pick=lambda r: r[0])
        report(f"(a) fixed cost per update, dropout {dropout} (median of {args.rounds} rounds of {args.updates})",
               medians, next(iter(cases)))
        del tiny, cases

    print("\ncompiling (b): the default network")
    default = {u: trainer(vocab, ids, unroll=u) for u in args.host_unrolls}
    first = default[args.host_unrolls[0]]
    cases = {"reference: + NumPy masks (before)": (first, {"old_masks": True})}
    cases |= {f"unroll {u}": (t, {}) for u, t in default.items()}
    n = max(4, args.updates // 8)
    medians = alternate(cases, args.rounds, n, pick=lambda r: r[1])
    report(f"(b) host work per update, default network (median of {args.rounds} rounds of {n})", medians,
           next(iter(cases)))
    walls = alternate({f"unroll {u}": (t, {}) for u, t in default.items()}, args.rounds, n, pick=lambda r: r[0])
    report("    and the whole update, for scale", walls, next(iter(walls)))


if __name__ == "__main__":
    main()
