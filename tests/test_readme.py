import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ci_runs_the_readme_test_command_on_two_pythons():
    ci = (ROOT / ".ci" / "run").read_text()
    command = 'pip install -e ".[test]" && python -m pytest'
    assert command in (ROOT / "README.md").read_text()
    suite = ci.split("\nsuite() {\n", 1)[1].split("\n}\n", 1)[0].splitlines()
    assert suite[-1].strip() == command  # the function's last line: its status is the suite's
    assert re.findall(r"^suite (\S+) (\S+)$", ci, flags=re.M) == [("python3", ".venv"), ('"$PY312"', ".venv-3.12")]
    assert ".venv-3.12/" in (ROOT / ".gitignore").read_text().splitlines()


def readme_pipelines():
    """The ```sh blocks of the README's Pipelines section, in order."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## Pipelines", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.*?)```", section, flags=re.S)


def test_readme_pipelines_work_as_written(tmp_path, charrnn_cmd):
    blocks = readme_pipelines()
    assert len(blocks) == 3
    env = dict(os.environ)
    if charrnn_cmd[0] != shutil.which("charrnn"):  # not installed on PATH: put a shim there
        shim = tmp_path / "bin" / "charrnn"
        shim.parent.mkdir()
        shim.write_text(f'#!/bin/sh\nexec {sys.executable} -m charrnn "$@"\n')
        shim.chmod(0o755)
        env["PATH"] = f"{shim.parent}{os.pathsep}{env['PATH']}"
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"  # `python` is this interpreter
    outputs = []
    for block in blocks:
        done = subprocess.run(["bash", "-euo", "pipefail", "-c", block], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, (block, done.stderr)
        outputs.append(done.stdout)
    assert outputs[0] == "" and (tmp_path / "run" / "latest.npz").exists()
    lines = outputs[1].splitlines()
    assert len(lines) == 2 and lines[0].startswith(", ")
    pattern = "to be, or not to be, that is the question. " * 3
    for seed, line in zip(["to be", "that is"], lines):  # each character follows 8 characters seen in training
        text = seed + line
        assert all(text[i : i + 9] in pattern for i in range(len(text) - 8)), text
    scores = [line.split() for line in outputs[2].splitlines()]
    assert [s[0] for s in scores] == ["a.txt", "b.txt"] and all(0 < float(s[1]) < 3 for s in scores)
