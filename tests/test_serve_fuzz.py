"""schemathesis against the real server: every request it derives from the OpenAPI schema, valid
or not, must get an answer the schema documents (``--checks all``), and no 5xx.

It runs the schemathesis command line, as a user would, with a fixed seed and a bounded number
of examples, and reads its JSON report.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.test_serve import export_tiny
from tuning.serving.launcher import ServerProcess

MAX_EXAMPLES = 30
"""Generated test cases per operation in the fuzzing phase (schemathesis ``--max-examples``)."""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    folder = export_tiny(tmp_path_factory.mktemp("fuzz") / "best_model")
    with ServerProcess(folder, ("--max-wait-ms", "5")) as proc:
        yield proc


def test_schemathesis_finds_no_failure(server: ServerProcess, tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "schemathesis.cli",
            "run",
            f"{server.url}/openapi.json",
            "--checks",
            "all",
            "--max-examples",
            str(MAX_EXAMPLES),
            "--seed",
            "16",
            "--workers",
            "1",
            "--generation-database",
            "none",
            "--no-color",
            "--report",
            "json",
            "--report-json-path",
            str(report),
        ],
        cwd=tmp_path,  # schemathesis may write files beside it
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-5000:] + done.stderr[-2000:]
    result = json.loads(report.read_text())
    assert result["complete"] and result["exit_code"] == 0
    assert result["operations"] == {
        "total": 4,
        "selected": 4,
        "tested": 4,
        "errored": 0,
        "skipped": 0,
        "skip_reasons": [],
    }
    phases = {name: phase["status"] for name, phase in result["phases"].items()}
    assert phases == {"examples": "success", "coverage": "success", "fuzzing": "success", "stateful": "skip"}
    cases = result["test_cases"]
    assert cases["generated"] >= 2 * MAX_EXAMPLES  # the POST endpoints took their share
    assert (cases["with_failures"], cases["errored"], result["failures"], result["errors"]) == (0, 0, [], [])
    # ... and the server is still up, and never failed inside.
    assert httpx.get(f"{server.url}/health", timeout=10).status_code == 200
    assert "Traceback" not in server.log()
