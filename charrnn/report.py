"""Results as text for the terminal: the tables and views the commands print."""
import json
from dataclasses import asdict

from charrnn.cells import cell
from charrnn.checkpoint import describe_nonfinite, nonfinite
from charrnn.configs import checkpoint_configs
from charrnn.model import ModelConfig

# info's words for a run's --precision (float32: none)
PRECISION_WORDS = {"bfloat16": ", bfloat16 products", "auto": ", auto precision (bfloat16 products where native)"}


def format_next(seed, best, probs, width=16):
    """The notebook's view: each seed character, under it the predicted next one and its probability."""
    def cell(c):
        return {"\n": "\\n", "\t": "\\t", " ": "␣", "\r": "\\r"}.get(c, c).ljust(5)

    blocks = []
    for start in range(0, len(seed), width):
        span = range(start, min(start + width, len(seed)))
        blocks.append("\n".join([
            "input " + "".join(cell(seed[i]) for i in span),
            "next  " + "".join(cell(best[i]) for i in span),
            "prob  " + "".join(f"{probs[i]:<5.2f}" for i in span),
        ]))
    blocks = ["\n".join(line.rstrip() for line in block.splitlines()) for block in blocks]
    return "\n\n".join(blocks)


def format_eval(report):
    lines = [f"{report['file']}: {report['characters']:,} characters"
             + (f", {report['unknown']:,} outside the vocabulary (skipped): "
                + " ".join(repr(c) for c in report["unknown_chars"]) if report["unknown"] else "")]
    lines.append(f"{'':10}{'nats/char':>10}{'bits/char':>11}{'perplexity':>12}{'accuracy':>10}")
    for name in ("model", "unigram"):
        r = report[name]
        if r is None:
            lines.append(f"{name:10}(this checkpoint does not store its training corpus's character counts)")
        else:
            lines.append(f"{name:10}{r['nats_per_char']:10.4f}{r['bits_per_char']:11.4f}"
                         f"{r['perplexity']:12.3f}{r['accuracy']:10.4f}")
    return "\n".join(lines)


def info(path, params, meta):
    """What `info` reports about a checkpoint, as a JSON-ready dict."""
    model_cfg, train_cfg = checkpoint_configs(meta)
    return {
        "checkpoint": str(path), "format": meta["format"], "version": meta["version"],
        "charrnn_version": meta.get("charrnn_version"), "model": asdict(model_cfg), "train": asdict(train_cfg),
        "vocab_size": len(meta["vocab"]), "vocab": meta["vocab"],
        "parameters": int(sum(a.size for a in params.values())), "nonfinite": nonfinite(params),
        **{key: meta.get(key) for key in ("step", "epoch", "loss", "val_loss", "best_val_loss")},
        "chosen_lr": meta.get("resume", {}).get("peak_lr"),  # what --lr auto chose for the budget
    }


def lr_words(lr, chosen):
    """info's words for --lr: the rate, or auto and what it chose."""
    if lr != "auto":
        return f"{lr}"
    return f"auto ({chosen:.3g} for the budget)" if chosen is not None else "auto (not chosen yet)"


def format_info(r):
    """`info`'s report as lines of text."""
    m, t = r["model"], r["train"]
    preview = r["vocab"] if len(r["vocab"]) <= 80 else r["vocab"][:77] + "..."

    def num(x, fmt=".4f"):
        return "-" if x is None else format(x, fmt)

    return "\n".join([
        f"checkpoint   {r['checkpoint']} ({r['format']} version {r['version']}, charrnn {r['charrnn_version']})",
        f"model        {cell(ModelConfig(**m)).label}, {m['layers']} layer(s) of {m['hidden']}, dropout {m['dropout']}",
        f"parameters   {r['parameters']:,}",
        f"weights      {'not finite: ' + describe_nonfinite(r['nonfinite']) if r['nonfinite'] else 'finite'}",
        f"vocabulary   {r['vocab_size']} characters: {json.dumps(preview, ensure_ascii=False)}",
        f"training     {t['optimizer']}, lr {lr_words(t['lr'], r.get('chosen_lr'))} ({t['lr_schedule']} schedule), "
        f"batch {t['batch_size']} x seq {t['seq_len']}, {'carried' if t['carry_state'] else 'reset'} state, "
        f"backend {t['backend']}"
        f"{PRECISION_WORDS.get(t.get('precision'), '')}",
        f"progress     {r['step']:,} updates, {num(r['epoch'], '.2f')} epochs",
        f"loss         train {num(r['loss'])}, validation {num(r['val_loss'])}, "
        f"best validation {num(r['best_val_loss'])} nats/char",
    ])


TSV_ESCAPES = {"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"}


def tsv_char(c):
    """A character as a TSV field: backslash, tab, newline and carriage return escaped as \\, \\t, \\n, \\r."""
    return TSV_ESCAPES.get(c, c)


def format_explain_tsv(rows, k):
    """explain's rows as TSV lines, a header first: position, char, bits, prob, then k pairs of
    alternative and probability; fields of unscored positions are empty."""
    header = ["position", "char", "bits", "prob", *(f"{name}{i}" for i in range(1, k + 1) for name in ("top", "p"))]
    yield "\t".join(header)
    for r in rows:
        scored = r["bits"] is not None
        fields = [str(r["position"]), tsv_char(r["char"]), f"{r['bits']:.6f}" if scored else "",
                  f"{r['prob']:.6f}" if scored else ""]
        top = [field for c, p in r["top"] for field in (tsv_char(c), f"{p:.6f}")]
        yield "\t".join(fields + top + [""] * (2 * k - len(top)))
