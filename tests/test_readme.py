from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    command = ci[-1]
    assert command == 'pip install -e ".[test]" && python -m pytest'
    assert command in (ROOT / "README.md").read_text()
