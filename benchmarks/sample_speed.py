"""Sampling speed: characters per second that `charrnn predict` generates, against a PyTorch loop
sampling the same weights one character per call.

Each model is a real checkpoint written by `charrnn train CORPUS --max-steps 1` (sampling speed
does not depend on what the weights learnt). charrnn generates with its Sampler, the compiled scan
`predict` runs; PyTorch runs the same cells (nn.LSTM / nn.GRU with the checkpoint's weights) under
no_grad, one character per call, drawing from the softmax with torch.multinomial. Rounds alternate
between the two within one run, after a warm-up call that compiles. The last column times a whole
`charrnn predict --length N` process (start-up included) for scale.

    pip install -e '.[bench]'
    python benchmarks/sample_speed.py [CORPUS] [--models lstm default] [--length 20000] [--rounds 5]
                                      [--beams 1 4 16] [--beam-length 2000]

With --beams, a second table gives beam search's characters per second at each width (one
compiled call of W beams per character, then the top W of the W x V candidates on the host).

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

from charrnn import checkpoint, configs
from charrnn.model import shared_params
from charrnn.beam import BeamConfig, beam_search
from charrnn.sample import Sampler

DEFAULT_CORPUS = Path(__file__).resolve().parents[2] / "shared" / "data" / "tinyshakespeare.txt"
MODELS = {"lstm": ("LSTM 2x256", ["--cell", "lstm"]), "default": ("default: GRU 2x256", [])}


def train_checkpoint(corpus, options, out):
    subprocess.run([sys.executable, "-m", "charrnn", "train", corpus, "--max-steps", "1", "--val-frac", "0",
                    "--out", out, "-q", *options], check=True)
    return Path(out) / "latest.npz"


def torch_sampler(params, config):
    """fn(seed_ids, length, rng_seed) -> ids: PyTorch, one call of the network per character."""
    import torch
    from torch import nn

    V, H, L = config.vocab_size, config.hidden, config.layers
    rnn = {"gru": nn.GRU, "lstm": nn.LSTM}[config.cell](V, H, L)
    out = nn.Linear(H, V)
    with torch.no_grad():
        for k in range(L):
            suffix = f".{k}" if k else ""
            getattr(rnn, f"weight_ih_l{k}").copy_(torch.from_numpy(params["W_x" + suffix].T.copy()))
            getattr(rnn, f"weight_hh_l{k}").copy_(torch.from_numpy(params["W_h" + suffix].T.copy()))
            getattr(rnn, f"bias_ih_l{k}").copy_(torch.from_numpy(params["b_x" + suffix]))
            getattr(rnn, f"bias_hh_l{k}").copy_(torch.from_numpy(params["b_h" + suffix]))
        out.weight.copy_(torch.from_numpy(params["W_y"].T.copy()))
        out.bias.copy_(torch.from_numpy(params["b_y"]))
    eye = torch.eye(V)

    @torch.no_grad()
    def generate(seed_ids, length, rng_seed):
        gen = torch.Generator().manual_seed(rng_seed)
        hs, state = rnn(eye[torch.as_tensor(seed_ids)][:, None])
        logits, ids = out(hs[-1, 0]), []
        for _ in range(length):
            c = torch.multinomial(torch.softmax(logits, -1), 1, generator=gen)
            ids.append(int(c))
            hs, state = rnn(eye[c][None], state)
            logits = out(hs[-1, 0])
        return ids

    return generate


def predict_process(path, length, backend):
    """Wall seconds of a whole `charrnn predict` process generating `length` characters."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "charrnn", "predict", "--checkpoint", str(path), "--seed", "T",
                    "--length", str(length), "--backend", backend], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("corpus", nargs="?", default=str(DEFAULT_CORPUS))
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--length", type=int, default=20000, help="characters per charrnn round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--backend", default="jax")
    parser.add_argument("--beams", type=int, nargs="*", default=[], help="beam widths to time")
    parser.add_argument("--beam-length", type=int, default=2000, help="characters per beam round")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(os.cpu_count())
    print(f"{os.cpu_count()} cores; torch {torch.__version__}; backend {args.backend}; "
          f"charrnn rounds of {args.length:,} characters, PyTorch rounds of {args.length // 10:,}")
    print(f"{'model':20} {'charrnn chars/s':>16} {'torch chars/s':>14} {'ratio':>6} {'predict process s':>18}")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            label, options = MODELS[name]
            path = train_checkpoint(args.corpus, options, os.path.join(tmp, name))
            params, meta = checkpoint.load(path)
            config = configs.model_config(meta)
            sampler = Sampler(shared_params(params), config, None, args.backend)
            seed = [1, 2, 3]
            sampler.generate(seed, 10)  # compiles
            reference = torch_sampler(params, config)
            ours, theirs = [], []
            for r in range(args.rounds):
                start = time.perf_counter()
                sampler.generate(seed, args.length, rng_seed=r)
                ours.append(args.length / (time.perf_counter() - start))
                start = time.perf_counter()
                reference(seed, args.length // 10, r)
                theirs.append(args.length // 10 / (time.perf_counter() - start))
            a, b = statistics.median(ours), statistics.median(theirs)
            print(f"{label:20} {a:16,.0f} {b:14,.0f} {a / b:6.2f} {predict_process(path, args.length, args.backend):18.1f}",
                  flush=True)
            for width in args.beams:
                print(f"{'':20} beam {width:3}: {beam_speed(sampler, seed, width, args):10,.0f} chars/s", flush=True)


def beam_speed(sampler, seed, width, args):
    """Median characters per second of beam search at `width` (after a call that compiles)."""
    beam_search(sampler, seed, 10, BeamConfig(width=width))
    rates = []
    for _ in range(args.rounds):
        start = time.perf_counter()
        beam_search(sampler, seed, args.beam_length, BeamConfig(width=width))
        rates.append(args.beam_length / (time.perf_counter() - start))
    return statistics.median(rates)


if __name__ == "__main__":
    main()
