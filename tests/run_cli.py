"""Running `medattn` commands in the test process (no interpreter start per command), failing with the
command, its output and the traceback of whatever it raised."""

from __future__ import annotations

import json
import traceback

import pytest
from typer.testing import CliRunner

from medattn.cli import app


def run(*args) -> str:
    """The command's output; any exception or non-zero exit fails the test."""
    args = [str(a) for a in args]
    result = CliRunner().invoke(app, args)
    if result.exit_code != 0 or result.exception is not None:
        error = result.exception
        trace = "".join(traceback.format_exception(error)) if error is not None else ""
        pytest.fail(f"medattn {' '.join(args)} exited {result.exit_code}:\n{result.output}\n{trace}")
    return result.output


def invoke(*args) -> dict:
    """The JSON object a `--json` command printed last."""
    return json.loads(run(*args).strip().splitlines()[-1])
