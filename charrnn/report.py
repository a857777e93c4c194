"""Results as text for the terminal: the tables and views the commands print."""
import json

from charrnn.backend import DEFAULT_BACKEND
from charrnn.checkpoint import describe_nonfinite


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


def format_info(r):
    m, t = r["model"], r["train"]
    cell = f"{m['cell']}" + (f" ({m['activation']})" if m["cell"] == "rnn" else "")
    preview = r["vocab"] if len(r["vocab"]) <= 80 else r["vocab"][:77] + "..."

    def num(x, fmt=".4f"):
        return "-" if x is None else format(x, fmt)

    return "\n".join([
        f"checkpoint   {r['checkpoint']} ({r['format']} version {r['version']}, charrnn {r['charrnn_version']})",
        f"model        {cell}, {m['layers']} layer(s) of {m['hidden']}, dropout {m['dropout']}",
        f"parameters   {r['parameters']:,}",
        f"weights      {'not finite: ' + describe_nonfinite(r['nonfinite']) if r['nonfinite'] else 'finite'}",
        f"vocabulary   {r['vocab_size']} characters: {json.dumps(preview, ensure_ascii=False)}",
        f"training     {t.get('optimizer', 'sgd')}, lr {t.get('lr')}, batch {t.get('batch_size', 1)} x "
        f"seq {t.get('seq_len')}, {'carried' if t.get('carry_state') else 'reset'} state, "
        f"backend {t.get('backend', DEFAULT_BACKEND)}",
        f"progress     {r['step']:,} updates, {num(r['epoch'], '.2f')} epochs",
        f"loss         train {num(r['loss'])}, validation {num(r['val_loss'])}, "
        f"best validation {num(r['best_val_loss'])} nats/char",
    ])
