"""A picture of a run: training and validation loss against characters trained on."""
import json
import math
from pathlib import Path


class PlotError(ValueError):
    """A run directory that cannot be plotted; the message says why."""


def read_metrics(run_dir):
    """The records of RUN_DIR/metrics.jsonl, split into training and validation points."""
    path = Path(run_dir) / "metrics.jsonl"
    try:
        records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except FileNotFoundError:
        raise PlotError(f"no metrics.jsonl in {run_dir}; is it a `charrnn train --out` directory?") from None
    except (OSError, ValueError) as e:
        raise PlotError(f"cannot read {path}: {e}") from None
    train = [r for r in records if "loss" in r]
    val = [r for r in records if "val_loss" in r]
    if not train and not val:
        raise PlotError(f"{path} holds no loss values yet")
    return train, val


def best_point(val):
    """The validation record with the lowest loss (what best.npz holds), or None."""
    return min(val, key=lambda r: r["val_loss"]) if val else None


def plot(run_dir, output):
    """Draw the curves into `output` (PNG); returns the best validation record or None."""
    try:
        import matplotlib
    except ImportError:
        raise PlotError("plot needs matplotlib: pip install 'charrnn[plot]'") from None

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    train, val = read_metrics(run_dir)
    best = best_point(val)
    fig, ax = plt.subplots(figsize=(8, 5), dpi=100)
    if train:
        ax.plot([r["chars"] for r in train], [r["loss"] for r in train], label="training loss", color="tab:blue")
    if val:
        ax.plot([r["chars"] for r in val], [r["val_loss"] for r in val], "o-", label="validation loss",
                color="tab:orange")
        ax.plot([best["chars"]], [best["val_loss"]], "*", markersize=14, color="tab:red")
        ax.annotate(f"best.npz: {best['val_loss']:.3f} at step {best['step']}", (best["chars"], best["val_loss"]),
                    textcoords="offset points", xytext=(-8, 12), ha="right")
    ax.set_xlabel("characters trained on")
    ax.set_ylabel("loss (nats per character)")
    ax.set_title(f"charrnn run {Path(run_dir).resolve().name}")
    ax.grid(alpha=0.3)
    ax.legend()
    secondary = ax.secondary_yaxis("right", functions=(lambda n: n / math.log(2), lambda b: b * math.log(2)))
    secondary.set_ylabel("bits per character")
    fig.tight_layout()
    fig.savefig(output, format="png")
    plt.close(fig)
    return best
