"""Choose the default configuration and schedule by measurement: train candidates on tinyshakespeare
for a fixed time budget, one process at a time, and record the best validation loss each reached.

    python benchmarks/sweep.py --stage schedules             # the default configuration, char-rnn against
                                                             # cosine, 20 minutes each
    python benchmarks/sweep.py --stage 1 --schedule cosine   # every candidate at each --lrs, 5 minutes
    python benchmarks/sweep.py --stage 2 --schedule cosine   # the best three of stage 1, 20 minutes
    python benchmarks/sweep.py --stage final --schedule cosine  # the best 20-minute run (stage 2's or
                                                             # the schedules stage's) twice more
                                                             # (--rng-seed 1 and 2), for the spread
    python benchmarks/sweep.py --budget 5m gru2x384-drop0.2  # named candidates only (stage "manual")
    python benchmarks/sweep.py default --lrs 2e-3 --seeds 1 2 --extra "--precision bfloat16"  # a spread
    python benchmarks/sweep.py --stage 1 --schedule cosine default --lrs 3e-3  # names before --lrs,
                                                             # which takes several values
    python benchmarks/sweep.py default --lrs auto --budget 5m  # train with no option at all

Each run is a real `charrnn train CORPUS --max-time BUDGET` process (PyTensor's compile time is not
counted in the budget; XLA's compiling at the first update, evaluation and checkpoints are). Every
run is appended to benchmarks/sweep_results.jsonl with its stage, schedule, learning rate, seed,
the configuration its checkpoint records, the precision its products ran in (`products`: what
`--precision auto` resolved to), the rate `--lr auto` chose (`chosen_lr`) and the load average
before it started (the runs are only comparable on a quiet machine: nothing else running).
Stages 2 and final choose from the results already recorded for the same schedule. `--extra` adds
train options to every run (`--extra "--precision bfloat16"`), recorded with it. Not part of the test
suite: stage 1 takes about 100 minutes on the 2-core development machine, stage 2 an hour, the final
stage 40 minutes, the schedules stage 40 minutes.
"""
import argparse
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytensor

from charrnn import checkpoint
from charrnn.backend import device
from charrnn.configs import TrainConfig
from charrnn.precision import resolve

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "sweep_results.jsonl"
CORPUS = HERE.parents[1] / "shared" / "data" / "tinyshakespeare.txt"
# issue 14's candidates; the learning rate and the schedule are given per run.
CANDIDATES = {
    "default": "",  # the defaults as they stand (GRU 2x256 with dropout 0.1; for a long budget 2x384 with 0.3)
    "gru2x256-drop0.2": "--cell gru --layers 2 --hidden 256 --dropout 0.2",
    "gru2x384-drop0.2": "--cell gru --layers 2 --hidden 384 --dropout 0.2",
    "gru2x384-drop0.3": "--cell gru --layers 2 --hidden 384 --dropout 0.3",
    "gru2x512-drop0.2": "--cell gru --layers 2 --hidden 512 --dropout 0.2",
    "gru2x512-drop0.3": "--cell gru --layers 2 --hidden 512 --dropout 0.3",
    "lstm2x512-drop0.3": "--cell lstm --layers 2 --hidden 512 --dropout 0.3",  # char-rnn's advice for larger nets
    "gru3x256-drop0.2": "--cell gru --layers 3 --hidden 256 --dropout 0.2",
    "gru3x384-drop0.3": "--cell gru --layers 3 --hidden 384 --dropout 0.3",
}
# The 2026-11-29 sweep's candidates (benchmarks/README.md), runnable by name.
EARLIER = {
    "gru2x256": "--cell gru --layers 2 --hidden 256 --dropout 0",
    "gru2x256-drop0.1": "--cell gru --layers 2 --hidden 256 --dropout 0.1",
    "gru2x256-lr3e-3": "--cell gru --layers 2 --hidden 256 --dropout 0 --lr 3e-3",
    "gru1x512": "--cell gru --layers 1 --hidden 512 --dropout 0",
    "gru2x384": "--cell gru --layers 2 --hidden 384 --dropout 0",
    "lstm2x256": "--cell lstm --layers 2 --hidden 256 --dropout 0",
    "rnn-tanh2x256": "--cell rnn --activation tanh --layers 2 --hidden 256 --dropout 0",
    "gru2x256-b32": "--cell gru --layers 2 --hidden 256 --dropout 0 --batch-size 32",
    "gru2x256-t32": "--cell gru --layers 2 --hidden 256 --dropout 0 --seq-len 32",
}
ALL = {**CANDIDATES, **EARLIER}
COMMON = "--batch-size 64 --seq-len 64 --optimizer adam --val-frac 0.05"  # options after it win
BUDGETS = {"schedules": "20m", "1": "5m", "2": "20m", "final": "20m", "manual": "20m"}
SCHEDULES = ("char-rnn", "cosine")


def run(name, lr, schedule, budget, out_dir, stage, rng_seed=0, extra=""):
    """Train one candidate; returns its results line."""
    out = out_dir / f"{stage}-{name}-lr{lr}-{schedule or 'default'}-{budget}-seed{rng_seed}"  # budgets kept apart
    shutil.rmtree(out, ignore_errors=True)  # a fresh run: no best.npz from an earlier one
    options = " ".join(filter(None, [COMMON, f"--lr {lr}", ALL[name], f"--rng-seed {rng_seed}",
                                     f"--lr-schedule {schedule}" if schedule else "", extra]))
    args = [sys.executable, "-m", "charrnn", "train", str(CORPUS), *shlex.split(options), "--max-time", budget,
            "--out", str(out), "--quiet"]
    load, start = os.getloadavg()[0], time.time()
    subprocess.run(args, check=True)
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    vals = [r for r in records if "val_loss" in r]
    best = min(vals, key=lambda r: r["val_loss"])
    rates = sorted(r["chars_per_s"] for r in records if "chars_per_s" in r)
    train = meta_of(out / "latest.npz")
    return {
        "name": name, "stage": stage, "schedule": train["train"]["lr_schedule"], "lr": lr, "rng_seed": rng_seed,
        "extra": extra, "options": options, "budget": budget,
        "best_val_loss": best["val_loss"], "best_val_bpc": best["val_bpc"], "at_step": best["step"],
        "at_epoch": best["epoch"], "final_val_loss": vals[-1]["val_loss"], "epochs": records[-1]["epoch"],
        "final_lr": [r["lr"] for r in records if "lr" in r][-1], "chars_per_s_median": rates[len(rates) // 2],
        "wall_s": round(time.time() - start, 1), "load_before": round(load, 2), **train, **environment(),
        "products": resolve(train["train"].get("precision", "float32"), train["train"]["backend"]),  # auto's here
    }


def meta_of(path):
    """The configuration a checkpoint records: {"model": ..., "train": ..., "chosen_lr": what --lr auto chose}."""
    _, meta = checkpoint.load(path)
    return {"model": meta["model"], "train": {k: v for k, v in meta["train"].items() if k != "max_time"},
            "chosen_lr": meta.get("resume", {}).get("peak_lr")}


def environment():
    """Where the run ran: commit, Python, PyTensor, JAX's device."""
    git = ["git", "-C", str(HERE)]
    commit = subprocess.run([*git, "describe", "--always"], capture_output=True, text=True).stdout.strip()
    results = f":(top,exclude){RESULTS.relative_to(HERE.parent)}"
    changed = subprocess.run([*git, "status", "--porcelain", "--untracked-files=no", "--", ":/", results],
                             capture_output=True, text=True).stdout
    commit += "-dirty" if changed.strip() else ""  # the results this sweep appends do not count
    return {"commit": commit, "date": time.strftime("%Y-%m-%d %H:%M"), "python": platform.python_version(),
            "pytensor": pytensor.__version__, "device": device("jax")}


def recorded(stage, schedule):
    """The latest result for each (name, lr, extra) recorded at `stage` with `schedule`, best first."""
    latest = {}
    for line in RESULTS.read_text(encoding="utf-8").splitlines() if RESULTS.exists() else []:
        r = json.loads(line)
        if r.get("stage") == stage and r.get("schedule") == schedule and r.get("rng_seed", 0) == 0:
            latest[r["name"], r["lr"], r.get("extra", "")] = r
    return sorted(latest.values(), key=lambda r: r["best_val_loss"])


def plan(args):
    """The runs of the stage asked for: (name, lr, schedule, rng_seed, extra) tuples."""
    schedule, extra = args.schedule, args.extra
    if args.stage == "schedules":
        return [("default", args.lrs[0], s, 0, extra) for s in SCHEDULES]
    if args.stage in ("1", "manual"):
        return [(name, lr, schedule, seed, extra) for name in args.names or CANDIDATES for lr in args.lrs
                for seed in args.seeds]
    resolved = schedule or TrainConfig().lr_schedule
    # stage 2: the best three of stage 1; final: the best 20-minute run of seed 0, stage 2's or the
    # schedules stage's (the default at its own lr)
    stages = ["1"] if args.stage == "2" else ["2", "schedules"]
    chosen = sorted((r for s in stages for r in recorded(s, resolved)), key=lambda r: r["best_val_loss"])
    chosen = chosen[: 3 if args.stage == "2" else 1]
    if not chosen:
        sys.exit(f"sweep.py: no stage {' or '.join(stages)} results with the {resolved} schedule in {RESULTS}; "
                 f"run {'that stage' if len(stages) == 1 else 'stage 2'} first")
    seeds = [0] if args.stage == "2" else [1, 2]
    return [(r["name"], r["lr"], schedule, seed, r.get("extra", "")) for r in chosen for seed in seeds]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", metavar="NAME",
                        help=f"candidates to run (stage 1 or manual): {', '.join(ALL)}")
    parser.add_argument("--stage", choices=list(BUDGETS), help="[default: manual with NAMEs, else 1]")
    parser.add_argument("--schedule", choices=SCHEDULES, help="--lr-schedule of every run [default: train's]")
    parser.add_argument("--lrs", nargs="+", default=["2e-3", "3e-3"], help="learning rates of stage 1 and manual "
                        "runs (the first for the schedules stage), auto among them [default: 2e-3 3e-3]")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0], help="--rng-seed of each stage 1 or manual "
                        "run, several for the spread [default: 0]")
    parser.add_argument("--budget", help="--max-time of each run [default: 5m for stage 1, else 20m]")
    parser.add_argument("--extra", default="", help='train options added to every run: "--precision bfloat16"')
    parser.add_argument("--out", type=Path, default=Path("/tmp/charrnn-sweep"),
                        help="directory for the runs' directories [default: /tmp/charrnn-sweep]")
    parser.add_argument("--dry-run", action="store_true", help="print the runs the stage would make, and stop")
    args = parser.parse_args()
    if set(args.names) - set(ALL):
        parser.error(f"unknown candidates {' '.join(sorted(set(args.names) - set(ALL)))}; choose from {' '.join(ALL)}")
    args.stage = args.stage or ("manual" if args.names else "1")
    budget = args.budget or BUDGETS[args.stage]
    runs = plan(args)
    if args.dry_run:
        for name, lr, schedule, seed, extra in runs:
            print(f"{args.stage}: {name} --lr {lr} --lr-schedule {schedule or 'default'} --rng-seed {seed} "
                  f"--max-time {budget} {extra}".rstrip())
        return
    for name, lr, schedule, seed, extra in runs:
        result = run(name, lr, schedule, budget, args.out, args.stage, seed, extra)
        print(json.dumps(result), flush=True)
        with open(RESULTS, "a", encoding="utf-8") as f:
            f.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
