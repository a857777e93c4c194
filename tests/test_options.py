"""The shared options: one declaration, one help text, honoured by every command that takes it."""
import logging
import sys
import warnings

import click
import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from charrnn.cli import cli
from charrnn.options import QUIET, Duration, LearningRate


@click.command()
@QUIET
def noisy(quiet):
    """Warns and logs to stderr the way a library does while compiling, then prints data."""
    library = logging.getLogger("a-library")
    handler = logging.StreamHandler(sys.stderr)
    library.addHandler(handler)
    try:
        warnings.warn("a library warning")
        library.warning("a library log record")
    finally:
        library.removeHandler(handler)
    click.echo("data")


def show_on_stderr(message, category, filename, lineno, file=None, line=None):
    """Python's own way of showing a warning, to the stderr of the moment."""
    sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


def test_quiet_keeps_library_warnings_and_log_records_off_stderr():
    with warnings.catch_warnings():
        warnings.simplefilter("always")  # as outside the test suite, where warnings are not errors
        warnings.showwarning = show_on_stderr  # and are not recorded by pytest
        loud = CliRunner().invoke(noisy, [])
        assert "a library warning" in loud.stderr and "a library log record" in loud.stderr, loud.stderr
        quiet = CliRunner().invoke(noisy, ["-q"])
    assert quiet.exit_code == 0 and quiet.stdout == "data\n" and quiet.stderr == ""
    assert logging.getLogger("a-library").isEnabledFor(logging.WARNING)  # and only for that command


def test_every_command_shares_one_quiet_and_one_backend_option():
    helps = {}
    for name, command in cli.commands.items():
        for param in command.params:
            if param.name in ("quiet", "backend", "precision", "checkpoint_path") and isinstance(param, click.Option):
                helps.setdefault(param.name, set()).add(param.help)
    assert all(len(texts) == 1 for texts in helps.values()), helps
    quiet = [name for name, command in cli.commands.items() if any(p.name == "quiet" for p in command.params)]
    assert sorted(quiet) == sorted(cli.commands)


@given(amount=st.floats(min_value=1e-3, max_value=1e6), unit=st.sampled_from(["", "s", "m", "h", "S", "M", "H"]),
       space=st.sampled_from(["", " "]))
def test_duration_reads_any_positive_amount_and_unit(amount, unit, space):
    scale = {"": 1, "s": 1, "m": 60, "h": 3600}[unit.lower()]
    assert Duration().convert(f"{space}{amount!r}{unit}{space}", None, None) == amount * scale


@given(text=st.text(max_size=12))
def test_duration_is_a_positive_number_of_seconds_or_a_usage_error(text):
    try:
        seconds = Duration().convert(text, None, None)
    except click.BadParameter as e:
        assert "\n" not in e.message and repr(text) in e.message
    else:
        assert 0 < seconds < float("inf")


@pytest.mark.parametrize("bad", ["nan", "inf", "-inf", "1e999h", "0", "-5m", "", "m", "5 minutes"])
def test_duration_refuses_what_is_not_a_positive_finite_duration(bad):
    with pytest.raises(click.BadParameter):
        Duration().convert(bad, None, None)


@pytest.mark.parametrize("text, rate", [("auto", "auto"), ("3e-3", 3e-3), ("0.01", 0.01), (" 2e-3 ", 2e-3)])
def test_lr_is_a_positive_number_or_auto(text, rate):
    assert LearningRate().convert(text, None, None) == rate


@pytest.mark.parametrize("bad", ["0", "-1e-3", "nan", "inf", "fast", "", "Auto"])
def test_lr_refuses_what_is_neither(bad):
    with pytest.raises(click.BadParameter, match="neither a positive number nor auto"):
        LearningRate().convert(bad, None, None)
