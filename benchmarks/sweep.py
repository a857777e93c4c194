"""Choose the default configuration by measurement: train each candidate on tinyshakespeare for a
fixed time budget, one at a time, and report the best validation loss each reached.

    python benchmarks/sweep.py --budget 20m --out /tmp/sweep CONFIG_NAME ...

Each candidate runs as a real `charrnn train CORPUS --max-time BUDGET` process (compile time is
not counted in the budget; evaluation and checkpoints are). Results are appended to
benchmarks/sweep_results.jsonl. Not part of the test suite; a 20-minute budget per candidate
means the full sweep takes hours on a 2-core machine.
"""
import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
CORPUS = HERE.parents[1] / "shared" / "data" / "tinyshakespeare.txt"
CANDIDATES = {
    "gru2x256": "--cell gru --layers 2 --hidden 256",
    "gru2x256-drop0.1": "--cell gru --layers 2 --hidden 256 --dropout 0.1",
    "gru2x256-drop0.2": "--cell gru --layers 2 --hidden 256 --dropout 0.2",
    "gru2x256-lr3e-3": "--cell gru --layers 2 --hidden 256 --lr 3e-3",
    "gru1x512": "--cell gru --layers 1 --hidden 512",
    "gru2x384": "--cell gru --layers 2 --hidden 384",
    "lstm2x256": "--cell lstm --layers 2 --hidden 256",
    "rnn-tanh2x256": "--cell rnn --activation tanh --layers 2 --hidden 256",
    "gru2x256-b32": "--cell gru --layers 2 --hidden 256 --batch-size 32",
    "gru2x256-t32": "--cell gru --layers 2 --hidden 256 --seq-len 32",
}
COMMON = "--batch-size 64 --seq-len 64 --optimizer adam --lr 2e-3 --val-frac 0.05"  # options after it win


def run(name, budget, out_dir):
    out = out_dir / name
    args = [sys.executable, "-m", "charrnn", "train", str(CORPUS), *shlex.split(COMMON),
            *shlex.split(CANDIDATES[name]), "--max-time", budget, "--out", str(out), "--quiet"]
    start = time.time()
    subprocess.run(args, check=True)
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    vals = [r for r in records if "val_loss" in r]
    best = min(vals, key=lambda r: r["val_loss"])
    rates = [r["chars_per_s"] for r in records if "chars_per_s" in r]
    return {
        "name": name, "options": f"{COMMON} {CANDIDATES[name]}", "budget": budget,
        "best_val_loss": best["val_loss"], "best_val_bpc": best["val_bpc"], "at_step": best["step"],
        "epochs": records[-1]["epoch"], "chars_per_s_median": sorted(rates)[len(rates) // 2],
        "wall_s": round(time.time() - start, 1),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="+", choices=list(CANDIDATES))
    parser.add_argument("--budget", default="20m")
    parser.add_argument("--out", type=Path, default=Path("/tmp/charrnn-sweep"))
    args = parser.parse_args()
    for name in args.names:
        result = run(name, args.budget, args.out)
        print(json.dumps(result), flush=True)
        with open(HERE / "sweep_results.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
