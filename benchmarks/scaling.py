"""Training throughput of charrnn's sharded step on 1, 2, 4, ... devices (charrnn/devices.py).

Weak scaling, as data parallelism is used: each device keeps --per-device-batch streams, so N
devices train on N times the batch in each update. For each device count a worker process starts
(on a CPU, XLA_FLAGS presents the cores as that many devices before JAX starts; on GPUs the first N
are used), compiles the training step as `charrnn train --devices N` does and runs a first update;
the parent then alternates timed rounds between the workers (the machine may be shared) and prints
characters per second (median of the rounds), milliseconds per update, the efficiency against
linear scaling (chars/s on N devices / (N x chars/s on one)) and the bytes XLA all-reduces per
update, read from the compiled step.

On a CPU the devices share the same cores, so the figures show the cost of splitting (the
all-reduce, smaller products per device), not a speedup.

    python benchmarks/scaling.py [--devices 1 2 4] [--per-device-batch 64] [--hidden 256]
                                 [--cell gru] [--layers 2] [--seq-len 64] [--precision float32]
                                 [--rounds 5] [--updates 5]

Not part of the test suite.
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time

import numpy as np

VOCAB = 65  # tinyshakespeare's


def worker(args):
    """Compile the step on args.n devices, run one update, then a timed round per line on stdin."""
    from charrnn import devices, model, optim, schedule, train
    from charrnn.configs import build_configs

    B = args.per_device_batch * args.n
    model_cfg, cfg = build_configs(VOCAB, cell=args.cell, layers=args.layers, hidden=args.hidden, batch_size=B,
                                   seq_len=args.seq_len, devices=args.n, precision=args.precision)
    params = model.shared_params(model.init_params(model_cfg, 0))
    opt_state = optim.optimizer_state(cfg.optimizer, params)
    step = train.compile_train_step(params, opt_state, model_cfg, cfg)
    rng = np.random.default_rng(0)
    x = rng.integers(0, VOCAB, (cfg.seq_len, B)).astype(np.int32)
    y, w = np.roll(x, -1, axis=0), np.ones((cfg.seq_len, B), np.float32)
    states = train.zero_states(model_cfg, B, "float32")
    key = [np.uint32(0)] if model_cfg.dropout else []  # the dropout masks' (made in the update)
    lr = np.float32(schedule.peak(cfg))
    loss, _ = step(x, y, w, states, *key, lr)
    float(loss)
    report = {"devices": devices.describe(cfg), "batch": B, "all_reduce_bytes": all_reduce_bytes(step, x, y, w,
                                                                                                 states, key, lr)}
    print(json.dumps(report), flush=True)
    for _ in sys.stdin:
        start = time.perf_counter()
        for _ in range(args.updates):
            loss, _ = step(x, y, w, states, *key, lr)
            float(loss)  # as the training loop reads it
        print(json.dumps({"seconds": time.perf_counter() - start}), flush=True)


def all_reduce_bytes(step, *inputs):
    """Bytes of the all-reduces in the compiled sharded step (0 on one device)."""
    if not step.sharded:
        return 0
    x, y, w, states, key, lr = inputs
    text = step.compiled_text(x, y, w, states, *key, lr)
    total = 0
    for line in text.splitlines():
        if re.search(r"\ball-reduce(-start)?\(", line):
            result = line.split("=", 1)[1].split("all-reduce", 1)[0]  # its shape, or a tuple of them
            for bits, dims in re.findall(r"[fsu](\d+)\[([0-9,]*)\]", result):
                total += int(bits) // 8 * int(np.prod([int(d) for d in dims.split(",") if d]))
    return total


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--per-device-batch", type=int, default=64)
    parser.add_argument("--cell", default="gru")
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--seq-len", type=int, default=64)
    parser.add_argument("--precision", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--updates", type=int, default=5, help="updates per timed round")
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)  # a worker's device count
    args = parser.parse_args()
    if args.n:
        return worker(args)
    workers = {}
    for n in args.devices:  # one after the other, so that compilations do not overlap
        env = {**os.environ, "XLA_FLAGS": f"{os.environ.get('XLA_FLAGS', '')} "
                                           f"--xla_force_host_platform_device_count={n}"}  # CPU only
        proc = subprocess.Popen([sys.executable, __file__, *sys.argv[1:], "--n", str(n)], env=env,
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        workers[n] = (proc, json.loads(proc.stdout.readline()))
    times = {n: [] for n in workers}
    for _ in range(args.rounds):  # alternating rounds: the machine's load falls on every worker alike
        for n, (proc, _) in workers.items():
            proc.stdin.write("go\n")
            proc.stdin.flush()
            times[n].append(json.loads(proc.stdout.readline())["seconds"] / args.updates)
    print(f"{args.cell} {args.layers}x{args.hidden} ({args.precision}), seq {args.seq_len}, "
          f"{args.per_device_batch} streams per device, "
          f"median of {args.rounds} rounds of {args.updates} updates")
    print(f"{'devices':>26} {'batch':>6} {'ms/update':>10} {'chars/s':>10} {'efficiency':>10} {'all-reduce':>11}")
    base = None
    for n, (proc, info) in workers.items():
        proc.stdin.close()
        proc.wait()
        seconds = statistics.median(times[n])
        rate = info["batch"] * args.seq_len / seconds
        base = base or rate / n
        print(f"{info['devices']:>26} {info['batch']:>6} {1000 * seconds:>10.1f} {rate:>10.0f} "
              f"{rate / (n * base):>10.2f} {info['all_reduce_bytes'] / 1e6:>9.2f} MB")


if __name__ == "__main__":
    main()
