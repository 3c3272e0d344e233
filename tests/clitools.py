"""Helpers for CLI tests: run a command in-process, and check the one-line error contract."""

from __future__ import annotations

from typer.testing import CliRunner

from tuner.cli import app

runner = CliRunner()


def run_cli(*args: str):
    """Runs ``cnntune ARGS`` in-process; an unexpected exception fails the test with its traceback."""
    return runner.invoke(app, list(args), catch_exceptions=False)


def one_line_error(result, *needles: str) -> str:
    """Asserts exit code 1 and exactly one output line, ``error: ...``, containing every needle."""
    assert result.exit_code == 1, result.output
    text = result.output.strip()
    assert "Traceback" not in text
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, text
    assert lines[0].startswith("error: "), text
    for needle in needles:
        assert needle in lines[0], text
    return lines[0]
