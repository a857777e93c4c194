"""explain's reading of a text against a plain numpy loop of the same equations, and its text
features, correlations and gate saturation against values computed by hand."""
import json
import math
import re
import subprocess

import numpy as np
import pytest

from charrnn import cells, checkpoint, explain, reading
from charrnn.corpus import CorpusError, Vocab
from charrnn.explain import Explanation, Reader, correlations, saturation, text_features, units_worth_a_look
from charrnn.model import ModelConfig, shared_params
from reference import loss, random_params, trace

V, H, CONTEXT = 5, 4, 3
VOCAB = Vocab("abcde")
CONFIGS = [ModelConfig(vocab_size=V, hidden=H, cell=c, layers=2) for c in ("rnn", "gru", "lstm")]


def reference_reading(p, ids, config, context):
    """(probabilities after each position (M, V), per layer [h, (c,) (gates)] at each position),
    from the numpy loop: the whole text from a zero state, or each position's last `context` ids."""
    if context is None:
        _, ys, _, taped = trace(p, ids, config)
        return ys, taped
    runs = [trace(p, ids[max(0, j - context + 1) : j + 1], config) for j in range(len(ids))]
    taped = [[np.array([run[3][layer][k][-1] for run in runs]) for k in range(len(runs[0][3][layer]))]
             for layer in range(config.layers)]
    return np.array([run[1][-1] for run in runs]), taped


@pytest.fixture(scope="module")
def text():
    """19 known characters with an unknown one among them, which the reading must skip."""
    ids = np.random.default_rng(3).integers(0, V, 19)
    known = VOCAB.decode(ids)
    return known[:6] + "?" + known[6:]


@pytest.mark.parametrize("context", [None, CONTEXT], ids=["carried", "reset"])
@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c.cell)
def test_reading_equals_a_numpy_loop(config, context, text, monkeypatch):
    monkeypatch.setattr(reading, "PIECE", 8)  # 19 characters in three calls: the state carried between them
    monkeypatch.setattr(reading, "WINDOWS", 8)
    p = {k: 0.5 * w for k, w in random_params(V, H, seed=1, config=config).items()}  # relu stays in float32's range
    e = explain.explain(Reader(shared_params({k: w.astype(np.float32) for k, w in p.items()}), config, context),
                        VOCAB, text)
    assert e.positions.tolist() == [*range(6), *range(7, 20)] and VOCAB.decode(e.ids) == text.replace("?", "")
    ys, taped = reference_reading(p, e.ids, config, context)
    np.testing.assert_allclose(np.exp(e.logp_next), ys, rtol=1e-4, atol=1e-6)
    for acts, (h, *rest) in zip(e.layers, taped, strict=True):
        np.testing.assert_allclose(acts["h"], h, rtol=1e-4, atol=1e-5)
        assert set(acts) == {"rnn": {"h"}, "gru": {"h", "gates"}, "lstm": {"h", "gates", "tanh_c"}}[config.cell]
        if config.cell == "lstm":
            np.testing.assert_allclose(acts["tanh_c"], np.tanh(rest[0]), rtol=1e-4, atol=1e-5)
        if config.cell != "rnn":
            np.testing.assert_allclose(acts["gates"], rest[-1], rtol=1e-4, atol=1e-5)
    check_scores(e, ys)


def check_scores(e, ys):
    """Bits, probability, rank, entropy and top-k of every position after the first, from the
    distribution the reference gave after the position before it."""
    top_ids, top_p = e.top(5)
    assert np.isnan(e.bits[0])
    for j in range(1, len(e.ids)):
        want = ys[j - 1]
        assert e.bits[j] == pytest.approx(-np.log2(want[e.ids[j]]), rel=1e-4)
        assert e.rank[j] == 1 + (want > want[e.ids[j]]).sum()
        assert e.entropy[j] == pytest.approx(-(want * np.log2(np.maximum(want, 1e-300))).sum(), rel=1e-4, abs=1e-6)
        assert top_ids[j].tolist() == np.argsort(-want).tolist()
        np.testing.assert_allclose(top_p[j], np.sort(want)[::-1], rtol=1e-4)
    assert e.scores()["bits_per_char"] == pytest.approx(np.mean(e.bits[1:]), rel=1e-6)


def test_too_few_known_characters():
    reader = Reader(shared_params({k: w.astype(np.float32) for k, w in random_params(V, H).items()}), CONFIGS[0])
    with pytest.raises(CorpusError, match="has 1 characters in the checkpoint's vocabulary; need 2"):
        explain.explain(reader, VOCAB, "??a?")


def test_text_features_by_hand():
    f = text_features('a "B(c" x\n(Ab)')
    assert f["inside quotes"].tolist() == [0, 0, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0]
    assert f["bracket depth"].tolist() == [0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 2, 2, 2, 1]
    assert f["position in line"].tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1, 2, 3]
    assert f["start of a word"].tolist() == [1, 0, 0, 1, 0, 1, 0, 0, 1, 0, 0, 1, 0, 0]
    assert f["upper case"].tolist() == [0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0]


def test_correlations_equal_numpy_and_constants_give_zero():
    rng = np.random.default_rng(0)
    acts = rng.normal(size=(50, 3))
    acts[:, 2] = 1.0  # a constant unit
    feature = acts[:, 0] * 2 + rng.normal(size=50)
    r = correlations(acts, feature)
    assert r[:2] == pytest.approx([np.corrcoef(acts[:, k], feature)[0, 1] for k in range(2)])
    assert r[2] == 0 and correlations(acts, np.ones(50)).tolist() == [0, 0, 0]


def fake(text, layers, config=CONFIGS[0]):
    """An Explanation of `text` (every character known) with the given per-layer activations."""
    n = len(text)
    return Explanation(text, VOCAB, np.arange(n), np.zeros(n, np.int32), np.zeros((n, V)), layers, cells.cell(config))


def test_units_worth_a_look_finds_the_unit_that_tracks_a_feature():
    text = 'ab "cd" e "fgh" i' * 3
    rng = np.random.default_rng(1)
    h = rng.normal(size=(len(text), 6))
    h[:, 4] = text_features(text)["inside quotes"] - 0.01 * rng.random(len(text))  # unit 4 tracks quotes
    found = units_worth_a_look(fake(text, [{"h": rng.normal(size=(len(text), 6))}, {"h": h}]))
    quotes = [u for u in found if u["feature"] == "inside quotes"]
    assert len(quotes) == 3 and (quotes[0]["layer"], quotes[0]["kind"], quotes[0]["unit"]) == (1, "h", 4)
    assert quotes[0]["r"] > 0.99 and abs(quotes[1]["r"]) < 0.99
    assert "bracket depth" not in {u["feature"] for u in found}  # no brackets: a constant feature is skipped


def test_saturation_counts_gates_below_and_above_the_thresholds():
    gates = np.array([[0.05, 0.5, 0.95, 0.2, 0.3, 0.0],  # GRU, H = 2: r | z | n
                      [0.50, 0.5, 0.99, 0.01, 0.9, 0.0],
                      [0.01, 0.95, 0.5, 0.5, -0.9, 0.0]])
    config = ModelConfig(vocab_size=V, hidden=2, cell="gru", layers=1)
    (got,) = saturation(fake("abc", [{"h": np.zeros((3, 2)), "gates": gates}], config))
    assert set(got) == {"r", "z"}  # n is a tanh, not a gate that saturates at 0 and 1
    assert [a.tolist() for a in got["r"]] == [[2 / 3, 0], [0, 1 / 3]]  # (below 0.1, above 0.9) per unit
    assert [a.tolist() for a in got["z"]] == [[0, 1 / 3], [2 / 3, 0]]


# The command, end to end: real checkpoints trained by `charrnn train`, `charrnn explain` as a real process.

TEXT = "hello world! hello~ world! hello world!\nhello world! "  # "~" is outside the vocabulary


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """A carried-state GRU and a reset-state (lesson-6) RNN, each trained for a few updates."""
    from click.testing import CliRunner

    from charrnn.cli import cli
    from conftest import PATTERN

    out = tmp_path_factory.mktemp("explain")
    (out / "c.txt").write_text(PATTERN * 40 + "\n")
    runs = {"carried": ["--cell", "gru", "--layers", "2", "--hidden", "8", "--batch-size", "4", "--seq-len", "16"],
            "reset": ["--preset", "lesson6", "--hidden", "8"]}
    for name, options in runs.items():
        result = CliRunner().invoke(cli, ["train", str(out / "c.txt"), *options, "--max-steps", "5", "--out",
                                          str(out / name), "--quiet"])
        assert result.exit_code == 0, result.output
    (out / "text.txt").write_text(TEXT)
    return out


def reference_nats(ckpt, text):
    """The loss of `text`'s known characters read as predict reads them, from the numpy loop in float64."""
    from charrnn.configs import checkpoint_configs, sampler_context

    params, meta = checkpoint.load(ckpt)
    config, train_cfg = checkpoint_configs(meta)
    p = {k: w.astype(np.float64) for k, w in params.items()}
    vocab = Vocab.from_json(meta["vocab"])
    ids, context = vocab.encode(vocab.known(text)), sampler_context(train_cfg)
    if context is None:
        return loss(p, ids[:-1], ids[1:], config)
    return -sum(np.log(trace(p, ids[max(0, j - context) : j], config)[1][-1][ids[j]]) for j in range(1, len(ids)))


@pytest.mark.parametrize("reading", ["carried", "reset"])
def test_tsv_bits_sum_to_the_loss_of_the_text(checkpoints, reading, charrnn_cmd):
    ckpt = checkpoints / reading / "latest.npz"
    result = subprocess.run([*charrnn_cmd, "explain", str(checkpoints / "text.txt"), "--checkpoint", str(ckpt),
                             "--format", "tsv"], capture_output=True, text=True, check=True)
    header, *rows = [line.split("\t") for line in result.stdout.splitlines()]
    assert header[:6] == ["position", "char", "bits", "prob", "top1", "p1"] and len(header) == 4 + 2 * 5
    assert [int(r[0]) for r in rows] == list(range(len(TEXT))) and all(len(r) == len(header) for r in rows)
    assert rows[TEXT.index("\n")][1] == "\\n" and rows[TEXT.index("~")][1:4] == ["~", "", ""]  # unknown: not scored
    assert rows[0][2] == ""  # nothing read before the first character
    bits = [float(r[2]) for r in rows if r[2]]
    assert len(bits) == len(TEXT) - 2
    assert sum(bits) * math.log(2) == pytest.approx(reference_nats(ckpt, TEXT), rel=1e-5)


def test_json_rows_and_max_chars(checkpoints, charrnn_cmd):
    ckpt = checkpoints / "carried" / "latest.npz"
    result = subprocess.run([*charrnn_cmd, "explain", "-", "--checkpoint", str(ckpt), "--format", "json", "--top-k",
                             "3", "--max-chars", "20"], input=TEXT, capture_output=True, text=True, check=True)
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["char"] for r in rows] == list(TEXT[:20]) and all(len(r["top"]) == 3 for r in rows[1:] if r["known"])
    assert rows[TEXT.index("~")]["known"] is False and rows[TEXT.index("~")]["bits"] is None
    assert sum(r["top"][0][1] >= r["top"][1][1] >= r["top"][2][1] for r in rows[1:] if r["known"]) == 18
    assert result.stderr == f"charrnn: explaining the first 20 of {len(TEXT)} characters (--max-chars)\n"


def test_the_page_is_written_atomically_and_self_contained(checkpoints, tmp_path):
    from click.testing import CliRunner

    from charrnn.cli import cli

    ckpt = str(checkpoints / "reset" / "latest.npz")
    out = str(tmp_path / "r.html")
    result = CliRunner().invoke(cli, ["explain", "--text", TEXT, "--checkpoint", ckpt, "-o", out, "-q"])
    assert result.exit_code == 0 and result.stdout == "" and result.stderr == ""
    page = (tmp_path / "r.html").read_text()
    assert "default-src 'none'" in page and not re.search(r"(src|href)=[\"']?(https?:)?//", page)
    assert [p.name for p in tmp_path.iterdir()] == ["r.html"] and (tmp_path / "r.html").stat().st_mode & 0o044


@pytest.mark.parametrize("args,code,message", [
    (["missing.txt"], 2, "'missing.txt' does not exist"),
    (["binary.bin"], 1, "NUL character at offset"),
    (["empty.txt"], 1, "empty"),
    (["--text", ""], 2, "the text is empty"),
    (["--text", "~~~", "--format", "tsv"], 1, "--text has 0 characters in the checkpoint's vocabulary; need 2"),
    (["text.txt", "--max-chars", "0"], 2, "0 is not in the range x>=1"),
    (["text.txt", "-o", "."], 2, "is a directory"),
    (["text.txt", "-o", "no/such/dir/r.html"], 1, "cannot write no/such/dir/r.html"),
    (["text.txt", "--text", "ab"], 2, "not both"),
    ([], 2, "nothing to explain"),
    (["text.txt"], 2, "the page needs a file"),
])
def test_bad_input_gets_one_line(checkpoints, tmp_path, monkeypatch, args, code, message):
    from click.testing import CliRunner

    from charrnn.cli import cli

    monkeypatch.chdir(tmp_path)
    (tmp_path / "binary.bin").write_bytes(b"\x00\x01\x02" * 50)
    (tmp_path / "empty.txt").write_text("")
    (tmp_path / "text.txt").write_text(TEXT)
    result = CliRunner().invoke(cli, ["explain", *args, "--checkpoint", str(checkpoints / "reset" / "latest.npz")])
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error")]
    assert result.exit_code == code and len(errors) == 1 and message in errors[0], result.stderr
    assert "Traceback" not in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["binary.bin", "empty.txt", "text.txt"]


def test_a_failed_write_leaves_nothing(checkpoints, tmp_path):
    """A disk that fills up while the page is written: exit 1, one line, no page and no temporary file."""
    from click.testing import CliRunner

    from charrnn.cli import cli
    from conftest import tmpfs

    with tmpfs(tmp_path / "small", "size=16k") as small:
        result = CliRunner().invoke(cli, ["explain", "--text", TEXT * 20, "--checkpoint",
                                          str(checkpoints / "carried" / "latest.npz"), "-o", str(small / "r.html")])
        assert result.exit_code == 1 and "cannot write" in result.stderr and "No space left" in result.stderr
        assert list(small.iterdir()) == []


def test_help_has_an_example():
    from click.testing import CliRunner

    from charrnn.cli import cli

    result = CliRunner().invoke(cli, ["explain", "--help"])
    assert result.exit_code == 0 and "Example" in result.stdout and "charrnn explain" in result.stdout
