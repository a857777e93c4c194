"""explain's page: one self-contained HTML file that opens offline by double-click.

The template (page.html) holds the CSS and JavaScript inline; its Content-Security-Policy allows
nothing but them, so the page cannot reach the network. The data is embedded as JSON, its large parts
deflated (zlib) and base64-encoded, which the page inflates with the browser's own DecompressionStream:
"chars", per known character its bits, probability, rank, entropy and top-k, and "layers", per layer
each unit's activations quantised to 16 levels over its range (see `quantise`); the page colours a
unit by its activation over its largest |activation| (so relu units are scaled by their maximum).
"""
import base64
import html
import json
import math
import zlib
from importlib import resources

import numpy as np

from charrnn.cells import cell
from charrnn.configs import checkpoint_configs
from charrnn.evaluate import score_unigram
from charrnn.explain import SATURATED, saturation, units_worth_a_look

GATE_COLOURS = {"i": "#1b9e77", "f": "#d95f02", "o": "#7570b3", "r": "#1b9e77", "z": "#d95f02"}
KINDS = {"h": "h", "tanh_c": "tanh(c)"}
LEVELS = 16  # per unit, over its range: more steps than the colour scale shows
CONTEXT = 8  # positions are stored sorted by the last CONTEXT characters read (see reading_order)


def deflated(data, strategy=zlib.Z_DEFAULT_STRATEGY):
    """base64 of zlib's deflate of `data` (bytes), at zlib's default level (9 took 5 times as long to
    save 4% of the page's JSON): what the page's inflate() reads back."""
    packer = zlib.compressobj(strategy=strategy)
    return base64.b64encode(packer.compress(data) + packer.flush()).decode()


def reading_order(ids, context=CONTEXT):
    """(M,) the known positions sorted by the characters read up to each, most recent first (then by
    position), as the Burrows-Wheeler transform sorts a text: after the same characters a network is in
    nearly the same state, so in this order a unit's level seldom changes from one position to the next."""
    M = len(ids)
    back = [np.concatenate([np.full(d, -1), ids[: M - d]]) for d in range(context)]  # back[d][j] = ids[j - d]
    return np.lexsort(back[::-1])  # lexsort's last key is its first


def quantise(acts, order):
    """(M, H) activations -> {"lo", "hi": (H,) each unit's range, "scale": its largest |activation|,
    "data": `deflated` (H, M) bytes, unit-major}: a = lo + level * (hi - lo) / (LEVELS - 1), each unit's
    levels taken in `order` (reading_order) and stored as steps, level minus the one before (mod LEVELS;
    the first from 0). Most steps are 0, so deflate's run-length strategy codes them in under 2 bits
    on average (tinyshakespeare, GRU 2 x 256: 1.8 bits, against 3.2-3.8 for the levels in text order)."""
    lo, hi = acts.min(axis=0).astype(np.float64), acts.max(axis=0).astype(np.float64)
    step = np.where(hi > lo, (hi - lo) / (LEVELS - 1), 1.0)
    levels = np.clip(np.round((acts - lo) / step), 0, LEVELS - 1).astype(np.int16)[order].T  # (H, M)
    steps = np.diff(levels, axis=1, prepend=0) % LEVELS
    scale = np.maximum(np.abs(lo), np.abs(hi))
    ranges = {name: [float(f"{x:.6g}") for x in values] for name, values in (("lo", lo), ("hi", hi), ("scale", scale))}
    return {**ranges, "data": deflated(steps.astype(np.uint8).tobytes(), zlib.Z_RLE)}


def _rounded(a, digits):
    """A float array as a JSON-ready list, NaN as None."""
    return [None if math.isnan(x) else round(x, digits) for x in np.asarray(a, dtype=np.float64).tolist()]


def page_data(e, k):
    """What the page's script reads, as a JSON-ready dict: "chars", the `deflated` JSON of the text,
    the vocabulary, per known character its id, bits, rank, entropy and top-k, and the reading order
    of the activations; "levels"; "layers", per layer `quantise`'s activations."""
    index = np.full(len(e.text), -1)
    index[e.positions] = np.arange(len(e.ids))
    top_ids, top_p = e.top(k)
    order = reading_order(e.ids)
    chars = {
        "text": e.text, "vocab": e.vocab.chars, "k": top_ids.shape[1], "index": index.tolist(), "ids": e.ids.tolist(),
        "bits": _rounded(e.bits, 4), "rank": e.rank.tolist(),
        "entropy": _rounded(e.entropy, 3), "top": top_ids.ravel().tolist(), "topP": _rounded(top_p.ravel(), 4),
        "order": order.tolist(),
    }
    return {
        "chars": deflated(json.dumps(chars, ensure_ascii=False, separators=(",", ":")).encode("utf-8")),
        "levels": LEVELS,
        "layers": [{kind: quantise(acts[kind], order) for kind in KINDS if kind in acts} for acts in e.layers],
    }


def render(e, header, k=5):
    """The page for Explanation `e`, with `header` (dict of label -> text, shown as given; see
    `facts`) and the top-k shown on hover."""
    replacements = {
        "title": html.escape(f"charrnn explain: {header.get('text', '')}"),
        "header": _header(e, header), "units": _units(units_worth_a_look(e)), "gates": _gates(saturation(e)),
        "data": json.dumps(page_data(e, k), separators=(",", ":")).replace("<", "\\u003c"),
    }
    page = resources.files("charrnn").joinpath("page.html").read_text(encoding="utf-8")
    for name, value in replacements.items():
        page = page.replace("{{" + name + "}}", value)
    return page


def _header(e, header):
    """The facts (checkpoint, model, characters, bits per character) and the ten most surprising characters."""
    facts = "".join(f"<div><dt>{html.escape(label)}</dt><dd>{html.escape(str(value))}</dd></div>"
                    for label, value in header.items())
    links = "".join(f'<li><a href="#c{k}" data-k="{k}"><code>{html.escape(_shown(e.text[k]))}</code> '
                    f"{e.bits[j]:.1f} bits</a></li>" for j, k in ((j, e.positions[j]) for j in e.most_surprising()))
    return (f'<h1>What the network expected</h1><dl class="facts">{facts}</dl>'
            f'<nav class="surprising" aria-label="Most surprising characters"><h2>Most surprising</h2>'
            f"<ol>{links}</ol></nav>")


def _shown(c):
    return {" ": "␣", "\n": "↵", "\t": "⇥", "\r": "␍"}.get(c, c)


def _units(found):
    """The 'units worth a look' list: a button per unit that shows it."""
    if not found:
        return "<p>No text feature varies in this text.</p>"
    items = "".join(f'<li><button type="button" data-layer="{u["layer"]}" data-kind="{u["kind"]}" '
                    f'data-unit="{u["unit"]}">'
                    f'{html.escape(u["feature"])}: layer {u["layer"] + 1}, unit {u["unit"]} {KINDS[u["kind"]]}, '
                    f'r = {u["r"]:+.2f}</button></li>' for u in found)
    return f"<ol>{items}</ol>"


def _gates(saturation):
    """One SVG scatter per layer (Karpathy et al.'s Figure 3): each unit's fraction of positions with
    the gate below 0.1 (x) and above 0.9 (y), one colour per sigmoid gate."""
    if not saturation:
        return "<p>This cell has no gates.</p>"
    return "".join(_gate_figure(layer, gates) for layer, gates in enumerate(saturation))


def _gate_figure(layer, gates, size=200, pad=34):
    """The scatter of one layer's `gates` (name -> (below, above) fractions per unit)."""
    low, high = SATURATED
    dots = "".join(f'<circle cx="{pad + x * size:.1f}" cy="{pad + (1 - y) * size:.1f}" r="2.2" '
                   f'fill="{GATE_COLOURS[g]}"><title>{g} gate, unit {u}: {x:.0%} below {low}, {y:.0%} above {high}'
                   "</title></circle>" for g, (xs, ys) in gates.items() for u, (x, y) in enumerate(zip(xs, ys)))
    keys = " ".join(f'<tspan fill="{GATE_COLOURS[g]}">● {g}</tspan>' for g in gates)
    width, mid = size + 2 * pad, pad + size / 2
    return (f'<figure><svg viewBox="0 0 {width} {width}" width="{width}" role="img" '
            f'aria-label="Gate saturation of layer {layer + 1}">'
            f'<rect x="{pad}" y="{pad}" width="{size}" height="{size}" fill="none" stroke="#999"/>'
            f'<line x1="{pad}" y1="{pad + size}" x2="{pad + size}" y2="{pad}" stroke="#ddd"/>{dots}'
            f'<text x="{mid}" y="{width - 6}" text-anchor="middle">fraction below {low}</text>'
            f'<text transform="translate(11 {mid}) rotate(-90)" text-anchor="middle">fraction above {high}</text>'
            f'<text x="{pad}" y="{pad - 10}">{keys}</text></svg><figcaption>layer {layer + 1}</figcaption></figure>')


def facts(e, meta, checkpoint, source):
    """The page header's facts: what was read, by which checkpoint, and how well (bits per character
    of the model on this reading, beside eval's unigram baseline from the training corpus's counts)."""
    model_cfg, train_cfg = checkpoint_configs(meta)
    unigram = score_unigram(meta["char_counts"], e.ids) if "char_counts" in meta else None
    unknown = len(e.text) - len(e.ids)
    return {
        "text": source, "checkpoint": str(checkpoint),
        "model": f"{cell(model_cfg).label}, {model_cfg.layers} x {model_cfg.hidden}, vocabulary {model_cfg.vocab_size}",
        "read": "from a zero state, state carried" if train_cfg.carry_state
                else f"each character from the {train_cfg.seq_len} before it, from a zero state",
        "characters": f"{len(e.text):,} ({len(e.ids) - 1:,} scored"
                      + (f", {unknown:,} outside the vocabulary)" if unknown else ")"),
        "bits per character": f"model {e.scores()['bits_per_char']:.3f}"
                              + (f", unigram {unigram['bits_per_char']:.3f}" if unigram else ""),
    }
