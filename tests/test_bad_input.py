"""Bad input gets one line on stderr, exit code 1 (runtime) or 2 (usage), no traceback, and leaves
what was saved untouched."""
import json
import os
import shutil
import subprocess
import zipfile

import numpy as np
import pytest
from click.testing import CliRunner

from charrnn import checkpoint
from charrnn.cli import cli
from conftest import PATTERN, tmpfs, write_bomb


def run(*args, input=None):
    result = CliRunner().invoke(cli, list(args), input=input)
    assert "Traceback" not in result.stderr and result.exception is None or isinstance(result.exception, SystemExit)
    return result


def one_error_line(result):
    lines = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A trained run (in RUN_PARENT/run, its corpus RUN_PARENT/c.txt), trained once for this module."""
    path = tmp_path_factory.mktemp("saved")
    (path / "c.txt").write_text(PATTERN * 40)
    assert run("train", str(path / "c.txt"), "--preset", "lesson6", "--hidden", "8", "--max-steps", "5",
               "--out", str(path / "run"), "--quiet").exit_code == 0
    return path / "run"


@pytest.fixture
def saved(trained):
    """The trained run, whose files must survive every bad command pointed at it."""
    files = {p.name: p.read_bytes() for p in trained.iterdir()}
    yield trained
    assert {p.name: p.read_bytes() for p in trained.iterdir()} == files


def test_unreadable_corpus(saved):
    result = run("train", "/proc/self/mem", "--out", str(saved))  # reading it fails with EIO, even for root
    assert result.exit_code == 1 and "cannot read /proc/self/mem" in one_error_line(result)


@pytest.mark.parametrize("raw,message", [
    (b"abc\x00def" * 100, "NUL character at offset 3"),
    ("café ".encode("latin-1") * 100, "byte 0xe9 at offset 3 is not valid utf-8"),
])
def test_bad_corpora(saved, tmp_path, raw, message):
    (tmp_path / "bad.txt").write_bytes(raw)
    result = run("train", str(tmp_path / "bad.txt"), "--out", str(saved))
    assert result.exit_code == 1 and message in one_error_line(result), result.stderr


def test_other_encodings_and_a_byte_order_mark(tmp_path):
    (tmp_path / "bom.txt").write_bytes(b"\xef\xbb\xbf" + b"ab\r\n" * 100)
    (tmp_path / "latin.txt").write_bytes("café ".encode("latin-1") * 100)
    ok = run("train", str(tmp_path / "latin.txt"), "--encoding", "latin-1", "--preset", "lesson6", "--hidden", "4",
             "--max-steps", "2", "--out", str(tmp_path / "latin"), "--quiet")
    assert ok.exit_code == 0 and "é" in checkpoint.load(tmp_path / "latin" / "latest.npz")[1]["vocab"]
    ok = run("train", str(tmp_path / "bom.txt"), "--preset", "lesson6", "--hidden", "4", "--max-steps", "2",
             "--out", str(tmp_path / "bom"), "--quiet")
    assert ok.exit_code == 0 and checkpoint.load(tmp_path / "bom" / "latest.npz")[1]["vocab"] == "\n\rab"


def test_huge_and_single_character_vocabularies(tmp_path):
    many = "".join(chr(0x10000 + i) for i in range(70_000))  # beyond 65,535 distinct characters
    (tmp_path / "many.txt").write_text(many + many[:100], encoding="utf-8")
    result = run("train", str(tmp_path / "many.txt"), "--preset", "lesson6", "--hidden", "4", "--max-steps", "2",
                 "--out", str(tmp_path / "many"), "--quiet")
    assert result.exit_code == 0, result.stderr
    _, meta = checkpoint.load(tmp_path / "many" / "latest.npz")
    assert len(meta["vocab"]) == 70_000
    (tmp_path / "one.txt").write_text("a" * 100)
    result = run("train", str(tmp_path / "one.txt"), "--preset", "lesson6", "--hidden", "4", "--out",
                 str(tmp_path / "one"), "--quiet")
    assert result.exit_code == 0, result.stderr
    out = run("predict", "--seed", "aa", "--length", "5", "--checkpoint", str(tmp_path / "one" / "latest.npz"))
    assert out.stdout == "aaaaa"


@pytest.mark.parametrize("command", [["predict", "--seed", "hello"], ["eval", "c.txt"], ["info"]])
@pytest.mark.parametrize("name,message", [
    ("truncated.npz", "not a readable charrnn checkpoint"), ("flipped.npz", "charrnn checkpoint"),
    ("objects.npz", "not a readable charrnn checkpoint"), ("newer.npz", "format version 99"),
    ("missing.npz", "no checkpoint at"),
])
def test_bad_checkpoints(saved, tmp_path, command, name, message):
    good = (saved / "latest.npz").read_bytes()
    (tmp_path / "truncated.npz").write_bytes(good[: len(good) // 2])
    (tmp_path / "flipped.npz").write_bytes(good[:200] + bytes(b ^ 0xFF for b in good[200:400]) + good[400:])
    np.savez(tmp_path / "objects.npz", meta=np.array([{"a": 1}], dtype=object))
    params, meta = checkpoint.load(saved / "latest.npz")
    np.savez(tmp_path / "newer.npz", meta=np.frombuffer(json.dumps({**meta, "version": 99}).encode(), np.uint8), **params)
    command = [str(saved.parent / arg) if arg == "c.txt" else arg for arg in command]
    args = [*command, str(tmp_path / name)] if command == ["info"] else [*command, "--checkpoint", str(tmp_path / name)]
    result = run(*args)
    assert result.exit_code == 1 and message in one_error_line(result), (name, command, result.stderr)


def test_unwritable_output_directory(tmp_path):
    (tmp_path / "c.txt").write_text(PATTERN * 40)
    result = run("train", str(tmp_path / "c.txt"), "--preset", "lesson6", "--out", "/proc/charrnn-run")
    assert result.exit_code == 1 and "cannot create output directory /proc/charrnn-run" in one_error_line(result)


@pytest.mark.parametrize("args", [["--hidden", "-3"], ["--layers", "0"], ["--seq-len", "-1"], ["--batch-size", "0"],
                                  ["--lr", "0"], ["--lr", "fast"], ["--lr", "nan"], ["--dropout", "-0.1"],
                                  ["--dropout", "1.0"], ["--val-frac", "1"], ["--clip", "-1"], ["--epochs", "0"],
                                  ["--max-time", "-5m"], ["--unroll", "0"]])
def test_train_numbers_out_of_range(saved, args):
    result = run("train", str(saved.parent / "c.txt"), *args, "--out", str(saved))
    assert result.exit_code == 2 and args[0] in one_error_line(result), (args, result.stderr)


@pytest.mark.parametrize("args", [["--length", "0"], ["--length", "-5"], ["--temperature", "-0.5"]])
def test_predict_numbers_out_of_range(saved, args):
    result = run("predict", "--seed", "hello", "--checkpoint", str(saved / "latest.npz"), *args)
    assert result.exit_code == 2 and args[0] in one_error_line(result), (args, result.stderr)


def test_a_batch_larger_than_the_corpus(saved):
    result = run("train", str(saved.parent / "c.txt"), "--batch-size", "600", "--seq-len", "1", "--out", str(saved))
    assert result.exit_code == 2 and "needs at least 601" in one_error_line(result)


def test_an_unroll_that_does_not_divide_the_sequence(saved):
    result = run("train", str(saved.parent / "c.txt"), "--unroll", "3", "--seq-len", "8", "--out", str(saved))
    assert result.exit_code == 2
    assert "--unroll 3 does not divide --seq-len 8; choose one of 1, 2, 4, 8" in one_error_line(result)
    result = run("train", str(saved.parent / "c.txt"), "--resume", str(saved / "latest.npz"), "--unroll", "3")
    assert result.exit_code == 2 and "--unroll 3 does not divide --seq-len 8" in one_error_line(result)


def test_a_preset_on_resume(saved):
    result = run("train", str(saved.parent / "c.txt"), "--resume", str(saved / "latest.npz"), "--preset", "lesson6")
    assert result.exit_code == 2
    assert "--preset cannot be combined with --resume: the run's configuration comes from" in one_error_line(result)


def test_read_only_output_directory(tmp_path, saved):
    with tmpfs(tmp_path / "readonly", "ro,size=1m") as mount:
        result = run("train", str(saved.parent / "c.txt"), "--preset", "lesson6", "--out", str(mount))
        assert result.exit_code == 1 and f"cannot write in {mount}: Read-only file system" in one_error_line(result)


def test_empty_file(tmp_path):
    (tmp_path / "zero.txt").write_bytes(b"")
    result = run("train", str(tmp_path / "zero.txt"), "--out", str(tmp_path / "run"))
    assert result.exit_code == 1 and "is empty" in one_error_line(result)
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").iterdir())


def test_a_deflate_bomb_in_a_checkpoint_is_never_inflated(tmp_path, trained_run, charrnn_cmd):
    """The issue's file: the real model plus a member of float32 zeros, 1 GiB inflated and 1 MB on
    disk. `predict` ignores it: the process never holds it (its peak memory stays under a GiB)."""
    bomb = tmp_path / "bomb.npz"
    shutil.copy(trained_run / "latest.npz", bomb)
    with zipfile.ZipFile(bomb, "a", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        write_bomb(zf, "extra.npy")
    with open(tmp_path / "out", "w") as out, open(tmp_path / "err", "w") as err:
        proc = subprocess.Popen([*charrnn_cmd, "predict", "--seed", "hello", "--length", "20", "--temperature", "0",
                                 "--checkpoint", str(bomb)], stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own peak memory
        proc.returncode = os.waitstatus_to_exitcode(status)
    assert proc.returncode == 0, (tmp_path / "err").read_text()
    assert len((tmp_path / "out").read_text()) == 20
    assert usage.ru_maxrss * 1024 < (1 << 30)  # ru_maxrss is in KiB on Linux


def test_a_checkpoint_whose_weights_are_not_finite(tmp_path, trained_run):
    params, meta, extras = checkpoint.load(trained_run / "latest.npz", extras=True)
    bad = {**params, "W_h": np.full_like(params["W_h"], np.nan), "b_y": params["b_y"].copy()}
    bad["b_y"][3] = np.inf
    checkpoint.save(tmp_path / "nan.npz", {**bad, **extras}, meta)
    ckpt = str(tmp_path / "nan.npz")
    expected = f"{ckpt} has weights that are not finite numbers (W_h: 4,096 NaN; b_y: 1 inf)"
    for command in (["predict", "--seed", "hello", "--checkpoint", ckpt],
                    ["eval", str(trained_run / "corpus.txt"), "--checkpoint", ckpt],
                    ["train", str(trained_run / "corpus.txt"), "--resume", ckpt, "--max-steps", "1600"]):
        result = run(*command)
        assert result.exit_code == 1 and expected in one_error_line(result), (command, result.stderr)
        assert result.stdout == ""
    result = run("info", ckpt)
    assert result.exit_code == 0 and "weights      not finite: W_h: 4,096 NaN; b_y: 1 inf" in result.stdout
    assert "1,500 updates" in result.stdout
    report = json.loads(run("info", ckpt, "--json").stdout)
    assert report["nonfinite"] == {"W_h": {"NaN": 4096}, "b_y": {"inf": 1}} and report["step"] == 1500
    assert "weights      finite" in run("info", str(trained_run / "latest.npz")).stdout
