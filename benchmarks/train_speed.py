"""Training throughput of charrnn against a PyTorch implementation of the same network, side by side.

For each configuration two worker processes start one after the other: one trains with charrnn's
compiled step (the one `charrnn train` runs), the other with PyTorch on the CPU (nn.RNN / nn.GRU /
nn.LSTM, the same equations, float32, the same number of threads, the same batches in the same
order, the same optimizer and clipping). The parent then alternates timed rounds between them
(this machine is shared and noisy) and prints characters per second for each, their ratio, the
wall time from process start to the end of the first update (imports, compilation on an empty
cache, first call) and each process's peak RSS.

    pip install -e '.[bench]'
    python benchmarks/train_speed.py [CORPUS] [--configs lesson6 lesson6-b64 lstm default]
                                     [--rounds 5] [--backend jax] [--batch-size 256]
                                     [--precision bfloat16] [--torch-device cuda] [--torch-autocast]
                                     [--updates 200] [--table]

--precision sets charrnn's (float32, the default here; bfloat16 products; or auto); --torch-autocast
runs PyTorch's update under torch.autocast(bfloat16) on its device; --torch-device cuda puts PyTorch
on the GPU, where its nn.GRU and nn.LSTM are cuDNN's. --updates fixes the updates per timed round
(instead of the configuration's own). --table prints one line per configuration
(benchmarks/gpu_check.sh uses it).

Not part of the test suite.
"""
import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

DEFAULT_CORPUS = Path(__file__).resolve().parents[2] / "shared" / "data" / "tinyshakespeare.txt"

# name -> (description, preset, options for build_configs, updates per timed round)
CONFIGS = {
    "lesson6": ("lesson-6 preset: relu RNN 1x256, batch 1, seq 8, SGD", "lesson6", {}, 400),
    "lesson6-b64": ("lesson-6 network, batch 64, seq 64", "lesson6", {"batch_size": 64, "seq_len": 64}, 20),
    "lstm": ("LSTM 2x256, batch 64, seq 64, Adam", None, {"cell": "lstm", "dropout": 0.0}, 8),
    "default": ("default: GRU 2x256, dropout 0.1, batch 64, seq 64, Adam", None, {}, 10),
}


def load_batches(corpus, name, batch_size=None, precision="float32"):
    """The vocabulary, configurations and batch stream both workers train on."""
    from charrnn.corpus import BatchStream, Vocab, read_text

    try:
        from charrnn.configs import build_configs
    except ImportError:  # a checkout from before configs.py (compare_commits.py runs those too)
        from charrnn.presets import build_configs

    text = read_text(corpus)
    vocab = Vocab.from_text(text)
    _, preset, options, _ = CONFIGS[name]
    options = {**options, **({"batch_size": batch_size} if batch_size else {}),
               **({"precision": precision} if precision else {})}  # precision: a checkout that has it
    model_cfg, cfg = build_configs(len(vocab), preset, **options)
    return vocab, model_cfg, cfg, BatchStream(vocab.encode(text), cfg.batch_size, cfg.seq_len)


# ---------------------------------------------------------------------------------------- workers

def charrnn_worker(vocab, model_cfg, cfg, stream, backend):
    """A function starting one update on batch k, as charrnn's training loop does; it returns the
    loss, which may still be on the device (float() waits for it)."""
    from dataclasses import replace

    from charrnn.train import Trainer

    cfg = replace(cfg, backend=backend)
    out = tempfile.mkdtemp(prefix="train-speed-")
    trainer = Trainer(vocab, model_cfg, cfg, out, log=lambda msg: None)
    trainer.compile()
    trainer.stream = stream
    if not hasattr(trainer, "_inputs"):  # since issue 11: masks made in the update, losses read at log lines
        def update(k):
            trainer.state.position = k
            loss = trainer._update()
            trainer.state.step += 1
            return loss

        return update
    lr = np.asarray(cfg.lr, dtype=np.float32)  # (a checkout from before --lr auto)
    zeros = np.zeros((model_cfg.state_size, cfg.batch_size, model_cfg.hidden), dtype=np.float32)
    carried, pending, step = [zeros], {}, [0]

    def inputs(k, step):
        """Batch k's x, y, w and dropout multipliers (none without dropout)."""
        made = trainer._inputs(k, step)
        return (*made[0], *made[1]) if len(made) == 2 else made  # before configs.py: (batch, keep)

    def update(k):
        """Update on batch k, preparing batch k + 1 while it runs, as Trainer._update does."""
        x, y, w, *keep = pending.pop(k, None) or inputs(k, step[0])
        loss, carried[0] = trainer.step_fn(x, y, w, carried[0] if cfg.carry_state else zeros, *keep, lr)
        pending[k + 1] = inputs((k + 1) % len(stream), step[0] + 1)
        step[0] += 1
        return float(loss)

    return update


def torch_worker(model_cfg, cfg, stream, device="cpu", autocast=False):
    """The same network and update in PyTorch: one-hot input, recurrent layers, dropout, linear output
    (on `device`; with `autocast`, the forward pass under torch.autocast in bfloat16)."""
    import contextlib

    import torch
    from torch import nn

    torch.manual_seed(0)
    V, H = model_cfg.vocab_size, model_cfg.hidden
    rnn_class = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}[model_cfg.cell]
    kwargs = {"nonlinearity": model_cfg.activation} if model_cfg.cell == "rnn" else {}
    rnn = rnn_class(V, H, model_cfg.layers, dropout=model_cfg.dropout if model_cfg.layers > 1 else 0.0, **kwargs)
    drop, out = nn.Dropout(model_cfg.dropout), nn.Linear(H, V)
    rnn, out = rnn.to(device), out.to(device)
    params = [*rnn.parameters(), *out.parameters()]
    lr = cfg.lr if isinstance(cfg.lr, float) else 2e-3  # --lr auto: the rate does not change the speed
    if cfg.optimizer == "sgd":
        opt = torch.optim.SGD(params, lr=lr)
    else:
        opt = torch.optim.Adam(params, lr=lr)
    zeros = torch.zeros(model_cfg.layers, cfg.batch_size, H, device=device)
    state = [(zeros, zeros) if model_cfg.cell == "lstm" else zeros]
    mixed = (lambda: torch.autocast(torch.device(device).type, torch.bfloat16)) if autocast else contextlib.nullcontext

    def update(k):
        x, y, w = (torch.from_numpy(np.require(a, requirements="W")).to(device) for a in stream.batch(k))
        h0 = state[0] if cfg.carry_state else ((zeros, zeros) if model_cfg.cell == "lstm" else zeros)
        with mixed():
            hs, hn = rnn(nn.functional.one_hot(x.long(), V).float(), h0)
            logits = out(drop(hs)).reshape(-1, V)
        nll = nn.functional.cross_entropy(logits.float(), y.reshape(-1).long(), reduction="none") * w.reshape(-1)
        loss = nll.sum() if cfg.loss == "sum" else nll.sum() / w.sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.clip:
            nn.utils.clip_grad_norm_(params, cfg.clip)
        opt.step()
        state[0] = tuple(s.detach() for s in hn) if model_cfg.cell == "lstm" else hn.detach()
        return loss.item()

    return update


def worker(kind, name, args):
    """Serve the parent: 'ready' after the first update, then one timing per 'N' line, then peak
    RSS and the page faults per timed update (memory the process had to fault in again)."""
    vocab, model_cfg, cfg, stream = load_batches(args.corpus, name, args.batch_size, args.precision)
    if kind == "torch":
        import torch

        torch.set_num_threads(args.threads)
        update = torch_worker(model_cfg, cfg, stream, args.torch_device, args.torch_autocast)
    else:
        update = charrnn_worker(vocab, model_cfg, cfg, stream, args.backend)
    float(update(0))
    k, faults = 1, 0
    print("ready", flush=True)
    for line in sys.stdin:
        if line.strip() == "quit":
            break
        n = int(line)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        start = time.perf_counter()
        for _ in range(n):
            loss = update(k % len(stream))
            k += 1
        float(loss)
        print(time.perf_counter() - start, flush=True)
        faults += resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(usage.ru_maxrss * 1024, faults / max(k - 1, 1), flush=True)


# ----------------------------------------------------------------------------------------- parent

def start_worker(kind, name, args, cache):
    env = {**os.environ, "CHARRNN_CACHE_DIR": cache}  # an empty compile cache: first-run times
    cmd = [sys.executable, __file__, args.corpus, "--worker", kind, "--configs", name, "--backend", args.backend,
           "--threads", str(args.threads), "--torch-device", args.torch_device,
           *(["--batch-size", str(args.batch_size)] if args.batch_size else []),
           "--precision", args.precision,
           *(["--torch-autocast"] if args.torch_autocast else [])]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
    if proc.stdout.readline().strip() != "ready":
        raise SystemExit(f"{kind} worker for {name} failed")
    return proc, time.perf_counter() - start


def ask(proc, line):
    proc.stdin.write(line + "\n")
    proc.stdin.flush()
    values = [float(v) for v in proc.stdout.readline().split()]
    return values[0] if len(values) == 1 else values


def compare(name, args):
    description, _, _, steps = CONFIGS[name]
    steps = args.updates or steps
    cfg = load_batches(args.corpus, name, args.batch_size, args.precision)[2]
    chars = steps * cfg.batch_size * cfg.seq_len
    with tempfile.TemporaryDirectory() as cache:
        procs, first = {}, {}
        for kind in ("charrnn", "torch"):  # one at a time, so neither start-up is slowed by the other
            procs[kind], first[kind] = start_worker(kind, name, args, cache)
        rates = {kind: [] for kind in procs}
        for _ in range(args.rounds):
            for kind, proc in procs.items():
                rates[kind].append(chars / ask(proc, str(steps)))
        rss, faults = {}, {}
        for kind, proc in procs.items():
            rss[kind], faults[kind] = ask(proc, "quit")
        for proc in procs.values():
            proc.wait()
    med = {kind: statistics.median(r) for kind, r in rates.items()}
    if args.table:
        torch_label = f"torch {args.torch_device}{' autocast bf16' if args.torch_autocast else ' float32'}"
        print(f"| {name} | {cfg.batch_size} | {args.precision} | {med['charrnn']:,.0f} | "
              f"{torch_label} | {med['torch']:,.0f} | {med['charrnn'] / med['torch']:.2f} | "
              f"{first['charrnn']:.1f} |", flush=True)
        return
    print(f"\n{description} ({args.rounds} rounds of {steps} updates, {chars:,} characters each)")
    print(f"{'':8} {'chars/s (median)':>17} {'min':>8} {'max':>8} {'first update s':>15} {'peak RSS MB':>12} "
          f"{'faults/update':>14}")
    for kind in procs:
        label = f"{kind} ({args.backend})" if kind == "charrnn" else kind
        print(f"{label:14} {med[kind]:11,.0f} {min(rates[kind]):8,.0f} {max(rates[kind]):8,.0f} "
              f"{first[kind]:15.1f} {rss[kind] / 2**20:12.0f} {faults[kind]:14,.0f}")
    print(f"ratio charrnn / torch: {med['charrnn'] / med['torch']:.2f}", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("corpus", nargs="?", default=str(DEFAULT_CORPUS))
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--backend", default="jax", help="charrnn's PyTensor backend")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="PyTorch threads (JAX uses every core)")
    parser.add_argument("--batch-size", type=int, help="streams per update, for every configuration")
    parser.add_argument("--precision", choices=["float32", "bfloat16", "auto"], default="float32",
                        help="charrnn's --precision [default: float32]")
    parser.add_argument("--torch-device", default="cpu", help="cpu, or cuda for PyTorch on the GPU (cuDNN)")
    parser.add_argument("--torch-autocast", action="store_true", help="PyTorch's forward under bfloat16 autocast")
    parser.add_argument("--updates", type=int, help="updates per timed round [default: the configuration's]")
    parser.add_argument("--table", action="store_true", help="one Markdown table row per configuration")
    parser.add_argument("--worker", choices=["charrnn", "torch"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args.worker, args.configs[0], args)
    import torch

    if not args.table:
        print(f"{os.cpu_count()} cores, {args.threads} PyTorch threads; torch {torch.__version__}; "
              f"corpus {args.corpus}")
    for name in args.configs:
        compare(name, args)


if __name__ == "__main__":
    main()
