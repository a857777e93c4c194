import fcntl
import json
import os
import signal
import struct
import subprocess
import termios
import time

import numpy as np
import pytest
from click.testing import CliRunner

import charrnn
from charrnn import checkpoint, configs
from charrnn.cli import cli
from charrnn.corpus import BatchStream, Vocab, eval_stream
from charrnn.evaluate import compile_eval_step, evaluate_stream
from charrnn.model import shared_params
from charrnn.report import format_next
from conftest import PATTERN
from reference import loss


@pytest.fixture
def runner():
    return CliRunner()


def test_version_and_help(runner):
    result = runner.invoke(cli, ["--version"])
    assert result.exit_code == 0 and charrnn.__version__ in result.stdout
    for command in ([], ["train"], ["predict"], ["eval"], ["info"], ["plot"], ["corpus"]):
        result = runner.invoke(cli, [*command, "--help"])
        assert result.exit_code == 0, command
        assert "Example" in result.stdout and "charrnn " in result.stdout, command


def test_predict_continues_the_pattern(runner, trained_run):
    ckpt = str(trained_run / "latest.npz")
    result = runner.invoke(cli, ["predict", "--seed", "hello wor", "--checkpoint", ckpt, "--temperature", "0",
                                 "--length", "30"])
    assert result.exit_code == 0, result.stderr
    assert result.stdout == (PATTERN * 4)[len("hello wor"):][:30]
    assert result.stderr == ""


def test_predict_is_reproducible_with_rng_seed(runner, trained_run):
    args = ["predict", "--seed", "hel", "--checkpoint", str(trained_run / "latest.npz"), "--length", "40",
            "--temperature", "20"]  # flat enough that draws differ
    a = runner.invoke(cli, [*args, "--rng-seed", "1"]).stdout
    assert len(a) == 40
    assert a == runner.invoke(cli, [*args, "--rng-seed", "1"]).stdout
    assert a != runner.invoke(cli, [*args, "--rng-seed", "2"]).stdout


def test_predict_next_shows_the_notebook_view(runner, trained_run):
    result = runner.invoke(cli, ["predict", "--seed", "-", "--next", "--checkpoint", str(trained_run / "latest.npz")],
                           input="hello worl\n")
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["input", *"hello", "␣", *"worl"]
    assert lines[1].split()[-5:] == ["␣", "w", "o", "r", "l", "d"][-5:]
    probs = [float(p) for p in lines[2].split()[1:]]
    assert len(probs) == 10 and all(0 < p <= 1 for p in probs) and probs[-1] > 0.9


def test_format_next_aligns_columns():
    text = format_next("a\nb", "\nb ", [0.5, 0.25, 1.0])
    assert text.splitlines() == ["input a    \\n   b", "next  \\n   b    ␣", "prob  0.50 0.25 1.00"]


def test_predict_errors(runner, trained_run, tmp_path):
    ckpt = str(trained_run / "latest.npz")
    result = runner.invoke(cli, ["predict", "--seed", "hi", "--checkpoint", str(tmp_path / "none.npz")])
    assert result.exit_code == 1 and "no checkpoint at" in result.stderr and "charrnn train" in result.stderr
    result = runner.invoke(cli, ["predict", "--seed", "héllo Z", "--checkpoint", ckpt])
    assert result.exit_code == 2 and "'Z' 'é'" in result.stderr and "--unknown skip" in result.stderr
    assert result.stdout == ""
    result = runner.invoke(cli, ["predict", "--seed", "hZé", "--unknown", "skip", "--checkpoint", ckpt,
                                 "--temperature", "0", "--length", "4"])
    assert result.exit_code == 0 and result.stdout == "ello"
    result = runner.invoke(cli, ["predict", "--seed", "", "--checkpoint", ckpt])
    assert result.exit_code == 2 and "seed is empty" in result.stderr


@pytest.mark.parametrize("bad", [["--length", "0"], ["--temperature", "-1"]])
def test_predict_refuses_numbers_out_of_range(runner, trained_run, bad):
    result = runner.invoke(cli, ["predict", "--seed", "h", "--checkpoint", str(trained_run / "latest.npz"), *bad])
    assert result.exit_code == 2 and bad[0] in result.stderr, bad


@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
    """Text files that `train` must refuse, each for its own reason."""
    path = tmp_path_factory.mktemp("corpora")
    (path / "bad.txt").write_bytes(b"hello \xff world")
    (path / "empty.txt").write_text("   \n")
    (path / "short.txt").write_text("abc")
    (path / "thousand.txt").write_text(PATTERN * 77)
    return path


@pytest.mark.parametrize("args,code,message", [
    (["missing.txt"], 2, "does not exist"),
    (["."], 2, "is a directory"),
    (["bad.txt"], 1, "byte 0xff at offset 6 is not valid utf-8"),
    (["empty.txt"], 1, "is empty"),
    (["short.txt", "--preset", "lesson6"], 2, "--batch-size 1 x --seq-len 8 needs at least 9"),
    (["short.txt"], 2, "--batch-size 64 x --seq-len 64 needs at least 4097"),
    (["thousand.txt", "--preset", "lesson6", "--val-frac", "0.001"], 2, "leaves 1 characters for validation"),
    (["short.txt", "--hidden", "0"], 2, "--hidden"),
    (["short.txt", "--layers", "0"], 2, "--layers"),
    (["short.txt", "--batch-size", "0"], 2, "--batch-size"),
    (["short.txt", "--lr", "-0.1"], 2, "--lr"),
    (["short.txt", "--seq-len", "0"], 2, "--seq-len"),
    (["short.txt", "--dropout", "1"], 2, "--dropout"),
    (["short.txt", "--cell", "transformer"], 2, "--cell"),
    (["short.txt", "--max-time", "soon"], 2, "is not a duration"),
    (["short.txt", "--preset", "nope"], 2, "--preset"),
])
def test_train_errors(runner, corpora, tmp_path, args, code, message):
    result = runner.invoke(cli, ["train", str(corpora / args[0]), *args[1:], "--out", str(tmp_path / "out")])
    assert result.exit_code == code, (args, result.stderr)
    assert message in result.stderr, (args, result.stderr)
    assert "Traceback" not in result.stderr and result.stdout == ""


def test_train_refuses_an_output_dir_it_cannot_create(runner, tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_text(PATTERN * 3)
    (tmp_path / "file").write_text("x")
    result = runner.invoke(cli, ["train", str(corpus), "--preset", "lesson6", "--out", str(tmp_path / "file" / "sub")])
    assert result.exit_code == 1 and "cannot create output directory" in result.stderr


def test_shell_pipeline(tmp_path, charrnn_cmd):
    """cat corpus | charrnn train - ... then echo seed | charrnn predict --seed -, as real processes."""
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(PATTERN * 1000, encoding="utf-8")
    out = tmp_path / "run"
    cmd = " ".join(f"'{c}'" for c in charrnn_cmd)
    train = subprocess.run(f"cat '{corpus}' | {cmd} train - --preset lesson6 --hidden 64 --max-steps 1500 --out '{out}'",
                           shell=True, capture_output=True, text=True)
    assert train.returncode == 0, train.stderr
    assert train.stdout == ""
    lines = train.stderr.splitlines()
    said = [next(i for i, line in enumerate(lines) if line.startswith(start)) for start in
            ("compiling the training step with the jax backend on cpu", "compiled in", "first update done in", "done: 1500 updates")]
    assert said == sorted(said)  # progress is visible while it compiles, in order
    predict = subprocess.run(f"echo 'hello worl' | {cmd} predict --seed - --checkpoint '{out}/latest.npz' "
                             f"--temperature 0 --length 15", shell=True, capture_output=True, text=True)
    assert predict.returncode == 0, predict.stderr
    assert predict.stdout == "d! hello world!"
    assert predict.stderr == ""


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_stops_training_with_a_checkpoint(tmp_path, charrnn_cmd, sig, code):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(PATTERN * 1000, encoding="utf-8")
    out = tmp_path / "run"
    proc = subprocess.Popen([*charrnn_cmd, "train", str(corpus), "--preset", "lesson6", "--hidden", "32", "--epochs", "1000",
                             "--log-every", "50", "--out", str(out)], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    metrics = out / "metrics.jsonl"  # its first line is written at update 50
    while not (metrics.exists() and metrics.stat().st_size) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.1)
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == code, stderr
    assert f"stopped by {sig.name}" in stderr and "Traceback" not in stderr
    _, meta = checkpoint.load(out / "latest.npz")
    assert meta["step"] >= 50 and f"after {meta['step']} updates" in stderr


def test_default_training_keeps_best_and_predict_uses_it(runner, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "c.txt").write_text(PATTERN * 300)
    result = runner.invoke(cli, ["train", "c.txt", "--cell", "gru", "--layers", "2", "--hidden", "16",
                                 "--batch-size", "4", "--seq-len", "16", "--max-steps", "40", "--eval-every", "20",
                                 "--sample-length", "10"])
    assert result.exit_code == 0, result.stderr
    assert "validation loss" in result.stderr and "bits/char" in result.stderr and "best validation loss" in result.stderr
    assert {p.name for p in (tmp_path / "checkpoints").iterdir()} == {"latest.npz", "best.npz", "metrics.jsonl", "samples.txt", ".lock"}
    (tmp_path / "checkpoints" / "latest.npz").write_text("not a checkpoint")
    result = runner.invoke(cli, ["predict", "--seed", "hello", "--length", "5"])
    assert result.exit_code == 0 and len(result.stdout) == 5, result.stderr  # read best.npz, not latest.npz
    (tmp_path / "checkpoints" / "best.npz").unlink()
    result = runner.invoke(cli, ["predict", "--seed", "hello"])
    assert result.exit_code == 1 and "latest.npz is not a readable charrnn checkpoint" in result.stderr


def test_max_time_stops_training(runner, tmp_path):
    (tmp_path / "c.txt").write_text(PATTERN * 300)
    result = runner.invoke(cli, ["train", str(tmp_path / "c.txt"), "--preset", "lesson6", "--hidden", "16",
                                 "--epochs", "10000", "--max-time", "2s", "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.stderr
    _, meta = checkpoint.load(tmp_path / "run" / "latest.npz")
    last = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[-1])
    # The last window may close just before the 2 s are up, when the stop comes right after it.
    assert 0 < meta["step"] < 10000 * 487 and 1.9 <= last["elapsed_s"] < 30


def test_the_default_network_follows_the_budgets_length_in_epochs(runner, tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_text(PATTERN * 10)
    per_epoch = len(BatchStream(np.arange(len(PATTERN) * 10), 2, 8))  # no validation part
    common = [str(corpus), "--batch-size", "2", "--seq-len", "8", "--val-frac", "0", "--sample-length", "0"]

    def network(out, *args):
        result = runner.invoke(cli, ["train", *common, *args, "--out", str(tmp_path / out)])
        assert result.exit_code == 0, result.stderr
        meta = checkpoint.load(tmp_path / out / "latest.npz")[1]
        return meta["model"]["hidden"], meta["model"]["dropout"], meta["step"], result.stderr

    long = (configs.LONG_NETWORK["hidden"], configs.LONG_NETWORK["dropout"])
    steps = int(configs.LONG_BUDGET * per_epoch)  # a budget in updates: its epochs choose before compiling
    *net, done, stderr = network("long", "--max-steps", str(steps))
    assert (*net, done) == (*long, steps)
    assert f"a budget of {configs.LONG_BUDGET:g} epochs: training gru 2x384 with dropout 0.3" in stderr
    assert network("short", "--max-steps", str(steps - 1))[:2] == (256, 0.1)
    # --max-time alone: the default network's first updates measure the budget at hundreds of epochs
    *net, done, stderr = network("timed", "--max-time", "6s")
    assert tuple(net) == long and "epochs of gru 2x256 with dropout 0.1: training gru 2x384 with dropout 0.3" in stderr
    records = [json.loads(line) for line in (tmp_path / "timed" / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["step"] == done and stderr.count("learning rate 0.002 (--lr auto") == 1  # the second run's


def test_corpus_and_training_without_a_corpus(runner, tmp_path):
    out = tmp_path / "plays.txt"
    result = runner.invoke(cli, ["corpus", "shakespeare", "-o", str(out)])
    assert result.exit_code == 0 and result.stdout == ""
    assert out.read_text(encoding="utf-8").startswith("THESEUS:\n")
    result = runner.invoke(cli, ["train", "--preset", "lesson6", "--hidden", "8", "--max-steps", "3",
                                 "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.stderr
    assert "training on Shakespeare's plays" in result.stderr
    _, meta = checkpoint.load(tmp_path / "run" / "latest.npz")
    assert len(meta["vocab"]) == len(set(out.read_text(encoding="utf-8")))


def test_eval_reports_model_and_unigram(runner, trained_run, tmp_path):
    held_out = tmp_path / "held.txt"
    held_out.write_text(PATTERN * 20 + "ZZé", encoding="utf-8")
    ckpt = str(trained_run / "latest.npz")
    result = runner.invoke(cli, ["eval", str(held_out), "--checkpoint", ckpt, "--json"])
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["characters"] == len(PATTERN) * 20 + 3 and report["unknown"] == 3
    assert report["unknown_chars"] == ["Z", "é"]
    model, unigram = report["model"], report["unigram"]
    assert model["nats_per_char"] < 0.3 < 1.5 < unigram["nats_per_char"]
    assert model["bits_per_char"] == pytest.approx(model["nats_per_char"] / 0.6931471805599453)
    assert model["perplexity"] == pytest.approx(2.718281828459045 ** model["nats_per_char"])
    assert model["accuracy"] > 0.9 > 0.3 > unigram["accuracy"]
    text = runner.invoke(cli, ["eval", str(held_out), "--checkpoint", ckpt]).stdout
    assert "3 outside the vocabulary" in text and text.splitlines()[2].startswith("model")
    assert text.splitlines()[3].startswith("unigram")


def test_eval_reads_sequentially_where_training_validates_in_streams(runner, tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_text(PATTERN * 300)
    run = tmp_path / "run"
    assert runner.invoke(cli, ["train", str(corpus), "--cell", "lstm", "--hidden", "16", "--batch-size", "4",
                               "--seq-len", "16", "--max-steps", "200", "--out", str(run)]).exit_code == 0
    params, meta = checkpoint.load(run / "latest.npz")
    val = tmp_path / "val.txt"
    val.write_text((PATTERN * 300)[-int(len(PATTERN) * 300 * 0.05):])
    report = json.loads(runner.invoke(cli, ["eval", str(val), "--checkpoint", str(run / "latest.npz"), "--json"]).stdout)
    model_cfg, train_cfg = configs.checkpoint_configs(meta)
    ids = Vocab.from_json(meta["vocab"]).encode(val.read_text())
    p = {name: w.astype(np.float64) for name, w in params.items()}
    sequential = loss(p, ids[:-1], ids[1:], model_cfg) / (len(ids) - 1)  # one stream from a zero state
    assert report["model"]["nats_per_char"] == pytest.approx(sequential, rel=1e-5)
    stream = eval_stream(ids, train_cfg.batch_size, train_cfg.seq_len)  # training's validation: 4 streams of 48
    step = compile_eval_step(shared_params(params), model_cfg, (stream.T, stream.B))
    total, _, count = evaluate_stream(step, stream, model_cfg, train_cfg.carry_state)
    assert (stream.B, stream.T) == (4, 16) and total / count == pytest.approx(meta["val_loss"], rel=1e-5)
    # a model that has learnt the pattern scores worse without context: each of the 4 streams starts from a
    # zero state (after 200 updates, 1.53 against 1.38 sequentially)
    assert meta["val_loss"] - sequential > 0.05


def test_info(runner, trained_run):
    ckpt = str(trained_run / "latest.npz")
    result = runner.invoke(cli, ["info", ckpt, "--json"])
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["model"]["cell"] == "rnn" and report["vocab_size"] == len(set(PATTERN))
    assert report["parameters"] == 9 * 64 + 64 + 64 * 64 + 64 + 64 * 9 + 9
    assert report["step"] == 1500 and report["version"] == checkpoint.VERSION
    text = runner.invoke(cli, ["info", ckpt]).stdout
    assert "rnn (relu), 1 layer(s) of 64" in text and "1,500 updates" in text and "5,385" in text


def test_plot_writes_a_png(runner, tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_text(PATTERN * 300)
    run = tmp_path / "run"
    assert runner.invoke(cli, ["train", str(corpus), "--hidden", "16", "--batch-size", "4", "--seq-len", "16",
                               "--max-steps", "30", "--eval-every", "10", "--log-every", "5", "--out", str(run)]).exit_code == 0
    result = runner.invoke(cli, ["plot", str(run), "-o", str(tmp_path / "loss.png")])
    assert result.exit_code == 0, result.stderr
    assert "best checkpoint:" in result.stderr and "best.npz" in result.stderr
    png = (tmp_path / "loss.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and png[12:16] == b"IHDR"
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert (width, height) == (800, 500) and len(png) > 10_000
    result = runner.invoke(cli, ["plot", str(tmp_path), "-o", str(tmp_path / "x.png")])
    assert result.exit_code == 1 and "no metrics.jsonl" in result.stderr


def test_options_from_the_environment(runner, trained_run):
    result = runner.invoke(cli, ["predict", "--seed", "hel", "--temperature", "0"],
                           env={"CHARRNN_CHECKPOINT": str(trained_run / "latest.npz"), "CHARRNN_LENGTH": "7"})
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "lo worl"


def test_shell_completion(charrnn_cmd):
    script = subprocess.run(charrnn_cmd, env={**os.environ, "_CHARRNN_COMPLETE": "bash_source"},
                            capture_output=True, text=True)
    assert script.returncode == 0 and "complete" in script.stdout and "_CHARRNN_COMPLETE" in script.stdout
    words = subprocess.run(charrnn_cmd, env={**os.environ, "_CHARRNN_COMPLETE": "bash_complete",
                                              "COMP_WORDS": "charrnn pre", "COMP_CWORD": "1"},
                           capture_output=True, text=True)
    assert words.stdout.split() == ["plain,predict"]


def test_each_line_writes_one_line_per_seed(runner, trained_run):
    result = runner.invoke(cli, ["predict", "--seed", "-", "--each-line", "--length", "12", "--temperature", "0",
                                 "--checkpoint", str(trained_run / "latest.npz")], input="hello\nworld! \n\nhel\n")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.split("\n") == [" world! hell", "hello world!", "", "lo world! he", ""]
    result = runner.invoke(cli, ["predict", "--seed", "x", "--each-line", "--checkpoint", str(trained_run / "latest.npz")])
    assert result.exit_code == 2 and "--seed -" in result.stderr


def test_predict_streams_and_stops_quietly_in_a_pipe(trained_run, charrnn_cmd):
    cmd = " ".join(f"'{c}'" for c in charrnn_cmd)
    done = subprocess.run(f"{cmd} predict --seed hello --length 1000000 --checkpoint '{trained_run}/latest.npz' "
                          f"| head -c 10", shell=True, capture_output=True, text=True, timeout=120)
    assert done.stdout == " world! he" and done.stderr == ""


def on_a_terminal(cmd):
    """Run cmd with stderr on an 80-column pseudo-terminal (where progress bars show): (stdout, stderr)."""
    leader, follower = os.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))  # a new one is 0 wide
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=follower)
    os.close(follower)
    err = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: the process closed the terminal
            break
        if not chunk:
            break
        err += chunk
    out = proc.communicate(timeout=120)[0]
    os.close(leader)
    return out.decode(), err.decode(errors="replace")


def test_eval_shows_its_progress_on_a_terminal_only(trained_run, tmp_path, charrnn_cmd):
    held_out = tmp_path / "held.txt"
    held_out.write_text(PATTERN * 50, encoding="utf-8")
    cmd = [*charrnn_cmd, "eval", str(held_out), "--checkpoint", str(trained_run / "latest.npz"), "--json"]
    out, err = on_a_terminal(cmd)
    assert json.loads(out)["characters"] == len(PATTERN) * 50  # the report is untouched on stdout
    assert "scoring" in err and "char" in err
    piped = subprocess.run(cmd, capture_output=True, text=True, check=True)
    assert piped.stdout == out and "scoring" not in piped.stderr
    assert "scoring" not in on_a_terminal([*cmd, "--quiet"])[1]


def test_predict_stops_across_pieces(runner, trained_run):
    ckpt = str(trained_run / "latest.npz")
    seed = (PATTERN * 20)[:250]  # the first compiled piece of 256 positions holds 6 generated characters
    after = (PATTERN * 40)[250:]
    args = ["predict", "--seed", seed, "--checkpoint", ckpt, "--temperature", "0", "--length", "600", "--stop", after[2:14]]
    assert runner.invoke(cli, args).stdout == after[:14]
    assert runner.invoke(cli, [*args, "--stop-drop"]).stdout == after[:2]
    two = runner.invoke(cli, [*args, "--stop", "d!", "--stop", "zz"])
    assert two.exit_code == 0 and two.stdout == after[: after.index("d!") + 2]


def test_predict_top_k_top_p_and_beam(runner, trained_run):
    ckpt = str(trained_run / "latest.npz")
    base = ["predict", "--seed", "hello", "--checkpoint", ckpt, "--length", "40"]
    want = (PATTERN * 4)[5:45]
    assert runner.invoke(cli, [*base, "--top-k", "1"]).stdout == want  # one character left to draw
    assert runner.invoke(cli, [*base, "--top-p", "0.5"]).stdout == want  # the pattern is near certain
    for width in ("1", "4"):
        result = runner.invoke(cli, [*base, "--beam", width])
        assert result.exit_code == 0 and result.stdout == want, result.stderr
    result = runner.invoke(cli, [*base, "--beam", "3", "--stop", "wor", "--length-penalty", "0.6"])
    assert result.stdout == " wor"


def test_each_line_with_stops_and_beam(runner, trained_run):
    args = ["predict", "--seed", "-", "--each-line", "--length", "30", "--temperature", "0",
            "--checkpoint", str(trained_run / "latest.npz"), "--stop", "o"]
    lines = "hello\nworld! \n\n"
    result = runner.invoke(cli, args, input=lines)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.split("\n") == [" wo", "hello", "", ""]
    assert runner.invoke(cli, [*args, "--stop-drop"], input=lines).stdout.split("\n") == [" w", "hell", "", ""]
    beam = runner.invoke(cli, [a for a in args if a not in ("--temperature", "0")] + ["--beam", "2", "--stop", "xyz"],
                         input=lines)
    assert beam.stdout.split("\n") == [" wo", "hello", "", ""]
    newline = runner.invoke(cli, [*args[:-2], "--beam", "2"], input="hel\n")  # each line ends at its newline
    assert newline.stdout == "lo world! hello world! hello w\n"


def test_predict_from_a_seed_file(runner, trained_run, tmp_path):
    ckpt = str(trained_run / "latest.npz")
    text = "droll! held " + PATTERN * 300 + "hel"  # far longer than the model's window
    (tmp_path / "seed.txt").write_text(text, encoding="utf-8")
    args = ["predict", "--checkpoint", ckpt, "--length", "30", "--temperature", "3", "--rng-seed", "4"]
    from_file = runner.invoke(cli, [*args, "--seed-file", str(tmp_path / "seed.txt")])
    assert from_file.exit_code == 0, from_file.stderr
    assert from_file.stdout == runner.invoke(cli, [*args, "--seed", text]).stdout
    assert from_file.stdout == runner.invoke(cli, [*args, "--seed", text[-8:]]).stdout  # seq_len 8: its window
    assert runner.invoke(cli, [*args, "--seed-file", "-"], input=text).stdout == from_file.stdout
    lines = runner.invoke(cli, [*args, "--seed-file", str(tmp_path / "seed.txt"), "--each-line", "--temperature", "0"])
    assert lines.stdout == "lo world! hello world! hello w\n"


def test_predict_refuses_bad_sampling_options(runner, trained_run, tmp_path):
    ckpt = str(trained_run / "latest.npz")
    (tmp_path / "bin.txt").write_bytes(b"ab\0cd")
    cases = [(["--top-k", "0"], "--top-k"), (["--top-p", "0"], "--top-p"), (["--top-p", "1.5"], "--top-p"),
             (["--beam", "0"], "--beam"), (["--beam", "2", "--temperature", "0.5"], "--temperature"),
             (["--beam", "2", "--top-k", "3"], "--top-k"), (["--beam", "2", "--top-p", "0.9"], "--top-p"),
             (["--stop", ""], "--stop"), (["--length-penalty", "1"], "--beam"),
             (["--seed-file", str(tmp_path / "none.txt")], "--seed-file"),
             (["--seed", "h", "--seed-file", str(tmp_path / "bin.txt")], "--seed-file")]
    for bad, name in cases:
        result = runner.invoke(cli, ["predict", *(["--seed", "h"] if "--seed-file" not in bad else []), *bad,
                                     "--checkpoint", ckpt])
        errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
        assert result.exit_code == 2 and len(errors) == 1 and name in errors[0], (bad, result.stderr)
    result = runner.invoke(cli, ["predict", "--seed-file", str(tmp_path / "bin.txt"), "--checkpoint", ckpt])
    assert result.exit_code == 1 and result.stderr.count("\n") == 1 and "binary" in result.stderr
    ok = runner.invoke(cli, ["predict", "--seed", "h", "--beam", "2", "--temperature", "0", "--length", "3",
                             "--checkpoint", ckpt])
    assert ok.exit_code == 0 and ok.stdout == "ell"  # --temperature 0 goes with --beam
