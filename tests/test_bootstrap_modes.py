"""The run command installs the runtime only; the test command installs the test tooling.

Each script's own bootstrap line is run with ``--plan``, which prints what a fresh machine would
get (every step, as if nothing were installed) and changes nothing.
"""

from __future__ import annotations

import re
import subprocess
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEV_TOOLS = {
    "pytest",
    "pytest-timeout",
    "hypothesis",
    "testcontainers",
    "ruff",
    "mypy",
    "playwright",
    "schemathesis",
}


def bootstrap_line(script: str) -> list[str]:
    """The one ``./scripts/bootstrap.sh ...`` command ``script`` runs, as argv."""
    lines = [
        line.split()
        for line in (ROOT / script).read_text().splitlines()
        if line.strip().startswith("./scripts/bootstrap.sh")
    ]
    assert len(lines) == 1, f"{script} must call ./scripts/bootstrap.sh exactly once"
    return lines[0]


def planned(script: str) -> list[str]:
    """What ``script``'s set-up would do on a fresh machine: its ``plan:`` lines."""
    result = subprocess.run(
        [*bootstrap_line(script), "--plan"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    lines = result.stdout.splitlines()
    return [line.removeprefix("plan: ") for line in lines if line.startswith("plan: ")]


def pip_installs(steps: list[str]) -> list[str]:
    return [step.split()[-1] for step in steps if re.search(r"pip install -q -e ", step)]


def apt_installs(steps: list[str]) -> set[str]:
    wanted: set[str] = set()
    for step in steps:
        if "apt-get install" in step:
            wanted |= {word for word in step.split() if not word.startswith("-")}
    return wanted


def test_the_run_command_installs_the_runtime_only() -> None:
    steps = planned("scripts/run.sh")
    assert pip_installs(steps) == ["."], steps
    assert not any("npm" in step for step in steps), steps
    assert {"mosquitto", "python3-venv"} <= apt_installs(steps)
    assert not apt_installs(steps) & {"chromium", "nodejs", "npm"}, steps


def test_the_test_command_installs_the_test_tooling() -> None:
    steps = planned("scripts/test.sh")
    assert pip_installs(steps) == [".[dev]"], steps
    assert any("npm ci" in step for step in steps), steps
    assert {"mosquitto", "chromium", "nodejs", "npm"} <= apt_installs(steps)
    assert (ROOT / ".ci/run").read_text().strip().splitlines()[-1] == "exec ./scripts/test.sh"


def test_the_runtime_requirements_leave_the_test_tooling_out() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]

    def names(requirements: list[str]) -> set[str]:
        return {re.split(r"[<>=!~\[; ]", r, maxsplit=1)[0].lower() for r in requirements}

    assert not names(project["dependencies"]) & DEV_TOOLS
    assert names(project["optional-dependencies"]["dev"]) >= DEV_TOOLS
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "pip install --no-cache-dir .\n" in dockerfile and "[dev]" not in dockerfile
