"""The fixed cost and the host work of one training update, for several unroll factors, and the
cost of making dropout masks in the graph.

(a) Fixed cost: a network of 2 layers of 8 units (almost no arithmetic), batch 64, seq 64, with and
    without dropout: milliseconds per update of charrnn's training loop (Trainer._update, each
    loss fetched once train.IN_FLIGHT later updates have started, as `charrnn train` does), for
    each --unrolls factor. The reference is the loop before issue 11: unroll 1, each loss read
    (waited for) as soon as its update is started.
(b) Host work: the default network (GRU 2x256, dropout 0.1, batch 64, seq 64): milliseconds per
    update the host spends in Trainer._update (making the batch and starting the update, which
    then runs asynchronously; CPU time of the loop's thread), for each --host-unrolls factor; the
    reference adds what the host did before issue 11, made in the same process: drawing the
    update's dropout masks with NumPy (a copy of the old train.dropout_keep).
    (a) and (b) also time the step as PyTensor's own JAX function (its containers passing every
    weight in and out on each call), which one device trained with before devices.DeviceFunction.
(c) Masks alone: the default network's (2, 64, 64, 256) dropout multipliers in one jitted JAX
    function, with jax.random's threefry (what PyTensor's random variables become in JAX) against
    charrnn.dropout's hash, and NumPy's generator on the host.
(d) Where the fixed cost goes: the network of (a) at unroll 1 with seq 8, 16, 32 and 64, and a
    straight line through the minima: a part per update and a part per time step (each time step
    is four loop iterations: two layers, forward and backward).
(e) What the host's time per call depends on: microseconds of the loop's thread per call of the
    step on an idle device (each call waited for; every input already on the device) for the
    default network, 2 layers of 8 units, and 1 layer of 8 units at seq 4; a jitted function that
    takes 37 donated (256, 256) arrays and returns them doubled; and BatchStream.batch for a batch
    without padding (strided views) against indexing every position (the padded batch's way).

Each configuration is compiled once; the timed rounds then alternate between them (this machine
is shared and noisy). Printed: the minimum and the median over the rounds (the minimum is the
least disturbed by other processes), and the ratio of each to the reference's.

    python benchmarks/overhead.py [CORPUS] [--unrolls 1 2 4 8] [--host-unrolls 1 4] [--rounds 15]
                                  [--parts a b c d e]

Not part of the test suite.
"""
import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path
from unittest import mock

import numpy as np

from charrnn import devices
from charrnn.backend import compile_function
from charrnn.configs import build_configs
from charrnn.corpus import BatchStream, Vocab, read_text
from charrnn.train import IN_FLIGHT, Trainer

DEFAULT_CORPUS = Path(__file__).resolve().parents[2] / "shared" / "data" / "tinyshakespeare.txt"


def trainer(vocab, ids, pytensor_function=False, **options):
    """A compiled Trainer on `ids` (its compile time and first update's time said). pytensor_function:
    its step is PyTensor's own JAX function, as one device's was before devices.DeviceFunction.
    float32 products unless `options` say otherwise (what every figure of this benchmark measured)."""
    model_cfg, cfg = build_configs(len(vocab), **{"precision": "float32", **options})
    t = Trainer(vocab, model_cfg, cfg, tempfile.mkdtemp(prefix="overhead-"), log=lambda msg: None)
    start = time.perf_counter()
    if pytensor_function:
        with mock.patch.object(devices, "compile_step", lambda inputs, outputs, updates, cfg, axes:
                               compile_function(inputs, outputs, updates=updates, backend=cfg.backend)):
            t.compile()
    else:
        t.compile()
    compiled = time.perf_counter()
    t.stream = BatchStream(ids, cfg.batch_size, cfg.seq_len)
    run(t, 1, read_each=True)
    print(f"  {options}: compiled in {compiled - start:.1f} s, first update {time.perf_counter() - compiled:.1f} s",
          flush=True)
    return t


def run(t, n, read_each=False, old_masks=False):
    """(wall ms per update, host ms per update) over n updates from the trainer's current place.
    The host's is the CPU time of this thread in Trainer._update (and the old masks), not its wall
    time: on 2 cores the update's own threads would otherwise count in it whenever they preempt it."""
    s, host, losses = t.state, 0.0, []
    start = time.perf_counter()
    for _ in range(n):
        s.position %= len(t.stream)
        begin = time.thread_time()
        if old_masks:
            old_dropout_keep(t.model_cfg, t.cfg, s.step)
        losses.append(t._update())
        host += time.thread_time() - begin
        if read_each or len(losses) > IN_FLIGHT:
            float(losses[-1 if read_each else -IN_FLIGHT - 1])
        s.step, s.position = s.step + 1, s.position + 1
    float(losses[-1])
    return 1e3 * (time.perf_counter() - start) / n, 1e3 * host / n


def old_dropout_keep(model_cfg, train_cfg, step, dtype=np.float32):
    """The host-side masks charrnn drew for every update before issue 11."""
    p = model_cfg.dropout
    shape = (model_cfg.layers, train_cfg.seq_len, train_cfg.batch_size, model_cfg.hidden)
    keep = np.random.default_rng([train_cfg.rng_seed, 1, step]).random(shape, dtype=np.float32) >= p
    return [keep.astype(dtype) / np.asarray(1 - p, dtype=dtype)]


def alternate(cases, rounds):
    """Per case, the timings in ms of `rounds` rounds that alternate the cases (each a function)."""
    times = {name: [] for name in cases}
    for _ in range(rounds):
        for name, timing in cases.items():
            times[name].append(timing())
    return times


def report(title, times):
    """Minimum and median per case, and their ratios to the first case's (the reference)."""
    print(f"\n{title}")
    ref = next(iter(times.values()))
    for name, ms in times.items():
        low, mid = min(ms), statistics.median(ms)
        print(f"  {name:36} min {low:8.2f} ms ({low / min(ref):4.2f}x)   median {mid:8.2f} ms "
              f"({mid / statistics.median(ref):4.2f}x)")


def fixed_cost(vocab, ids, args):
    """(a), without and with dropout."""
    print("compiling (a): 2 layers of 8 units, batch 64, seq 64")
    for dropout in (0.0, 0.1):
        tiny = {u: trainer(vocab, ids, hidden=8, dropout=dropout, unroll=u) for u in args.unrolls}
        first = tiny[args.unrolls[0]]
        plain = trainer(vocab, ids, pytensor_function=True, hidden=8, dropout=dropout, unroll=args.unrolls[0])
        cases = {"reference: unroll 1, each loss read": lambda: run(first, args.updates, read_each=True)[0],
                 f"PyTensor's function, unroll {args.unrolls[0]}": lambda: run(plain, args.updates)[0]}
        cases |= {f"unroll {u}": (lambda t=t: run(t, args.updates)[0]) for u, t in tiny.items()}
        report(f"(a) fixed cost per update, dropout {dropout} ({args.rounds} rounds of {args.updates} updates)",
               alternate(cases, args.rounds))


def host_work(vocab, ids, args):
    """(b), and the whole update for scale."""
    print("\ncompiling (b): the default network")
    default = {u: trainer(vocab, ids, unroll=u) for u in args.host_unrolls}
    first, n = default[args.host_unrolls[0]], 4
    plain = trainer(vocab, ids, pytensor_function=True, unroll=args.host_unrolls[0])
    cases = {"reference: + NumPy masks (before)": lambda: run(first, n, old_masks=True)[1],
             f"PyTensor's function, unroll {args.host_unrolls[0]}": lambda: run(plain, n)[1]}
    cases |= {f"unroll {u}": (lambda t=t: run(t, n)[1]) for u, t in default.items()}
    report(f"(b) host work per update, default network ({args.rounds} rounds of {n} updates)",
           alternate(cases, args.rounds))
    walls = {f"unroll {u}": (lambda t=t: run(t, n)[0]) for u, t in default.items()}
    report("    the whole update, for scale", alternate(walls, max(3, args.rounds // 3)))


def masks(args):
    """(c): the default network's masks, 20 per timing."""
    import jax
    import pytensor.tensor as pt

    from charrnn import dropout
    from charrnn.backend import compile_function

    shape, p = (2, 64, 64, 256), 0.1

    def threefry(step):
        key = jax.random.fold_in(jax.random.key(0, impl="threefry2x32"), step)
        return jax.random.bernoulli(key, 1 - p, shape).astype(np.float32) / np.float32(1 - p)

    step = pt.scalar("step", dtype="uint32")
    fns = {"jax.random threefry": jax.jit(threefry),
           "charrnn.dropout hash": compile_function([step], dropout.keep_multipliers(shape, p, 0, step, "float32"))}

    def timing(fn):
        start = time.perf_counter()
        for k in range(20):
            out = fn(np.asarray(k, dtype=np.uint32))
        out.block_until_ready()
        return 1e3 * (time.perf_counter() - start) / 20

    def numpy_masks():
        start = time.perf_counter()
        for k in range(20):
            np.random.default_rng([0, 1, k]).random(shape, dtype=np.float32) >= p
        return 1e3 * (time.perf_counter() - start) / 20

    for fn in fns.values():
        timing(fn)
    cases = {name: (lambda fn=fn: timing(fn)) for name, fn in fns.items()} | {"NumPy on the host (before)": numpy_masks}
    report(f"(c) dropout masks {shape}, ms each ({args.rounds} rounds of 20)", alternate(cases, args.rounds))


def per_step(vocab, ids, args):
    """(d): ms per update against the sequence length."""
    print("\ncompiling (d): 2 layers of 8 units, batch 64, unroll 1")
    seqs = {T: trainer(vocab, ids, hidden=8, dropout=0.0, seq_len=T) for T in (8, 16, 32, 64)}
    times = alternate({f"seq {T}": (lambda t=t: run(t, args.updates)[0]) for T, t in seqs.items()}, args.rounds)
    report(f"(d) ms per update against the sequence length ({args.rounds} rounds of {args.updates} updates)", times)
    slope, intercept = np.polyfit(list(seqs), [min(v) for v in times.values()], 1)
    print(f"  a line through the minima: {intercept:.2f} ms per update + {1e3 * slope:.1f} us per time step")


def per_call(vocab, ids, args):
    """(e): the host's microseconds per call against the step's structure, and the batch's."""
    import jax
    import jax.numpy as jnp

    print("\ncompiling (e)")
    steps = {"default network": {}, "2 layers of 8 units": {"hidden": 8}, "1 layer of 8 units, seq 4":
             {"hidden": 8, "layers": 1, "seq_len": 4}}
    cases = {}
    for name, options in steps.items():
        t = trainer(vocab, ids, **options)
        x, y, w = t.stream.batch(0)
        placed = [jax.device_put(v) for v in (x, y, w, t.zeros, np.uint32(3), np.float32(1e-3))]
        cases[f"{name} ({len(t.step_fn.shared)} shared)"] = lambda fn=t.step_fn, placed=placed: fn(*placed)
    double = jax.jit(lambda *a: [2 * v for v in a], donate_argnums=tuple(range(37)))
    arrays = [[jnp.ones((256, 256)) for _ in range(37)]]
    cases["37 donated arrays in, 37 out"] = lambda: arrays.__setitem__(0, double(*arrays[0])) or arrays[0]
    stream = BatchStream(ids, 64, 64)
    cases["BatchStream.batch, strided views"] = lambda: stream.batch(5)
    cases["BatchStream.batch, every position"] = lambda: stream._padded(5)

    def timing(call):
        spent = []
        for _ in range(10):
            begin = time.thread_time()
            out = call()
            spent.append(time.thread_time() - begin)
            jax.block_until_ready(out)
        return 1e3 * statistics.median(spent)

    for call in cases.values():
        timing(call)
    report(f"(e) host ms per call on an idle device ({args.rounds} rounds of 10 calls)",
           alternate({name: (lambda call=call: timing(call)) for name, call in cases.items()}, args.rounds))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("corpus", nargs="?", default=str(DEFAULT_CORPUS))
    parser.add_argument("--unrolls", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--host-unrolls", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--updates", type=int, default=20, help="updates per timed round of (a)")
    parser.add_argument("--parts", nargs="+", default=["a", "b", "c", "d", "e"], choices=["a", "b", "c", "d", "e"])
    args = parser.parse_args()
    text = read_text(args.corpus)
    vocab = Vocab.from_text(text)
    ids = vocab.encode(text)
    print(f"{os.cpu_count()} cores; load average {os.getloadavg()[0]:.1f} at the start")
    if "a" in args.parts:
        fixed_cost(vocab, ids, args)
    if "b" in args.parts:
        host_work(vocab, ids, args)
    if "c" in args.parts:
        masks(args)
    if "d" in args.parts:
        per_step(vocab, ids, args)
    if "e" in args.parts:
        per_call(vocab, ids, args)


if __name__ == "__main__":
    main()
