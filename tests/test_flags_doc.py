"""Help and docs agree with the code: every flag has a variable, the docs' table is generated."""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tether.wording import plural
from tether_cli.flag_table import BEGIN, END, commands, options, render, rows
from tether_cli.flags import flag_doc
from tether_cli.main import build_parser

ROOT = Path(__file__).resolve().parent.parent
OPERATIONS = ROOT / "docs" / "operations.md"
TETHER = [sys.executable, "-m", "tether_cli"]


def all_options() -> list[tuple[str, str]]:
    return [
        (command, action.option_strings[-1])
        for command, parser in commands(build_parser())
        for action in options(parser)
    ]


@pytest.mark.parametrize(("command", "flag"), all_options())
def test_every_flag_has_a_tether_variable(command: str, flag: str) -> None:
    parser = dict(commands(build_parser()))[command]
    action = next(a for a in options(parser) if flag in a.option_strings)
    doc = flag_doc(action)
    assert doc is not None, f"{command} {flag} has no TETHER_* variable"
    assert re.fullmatch(r"TETHER_[A-Z0-9_]+", doc.variable)
    assert doc.variable in " ".join(parser.format_help().split()), "--help names the variable"


def test_the_checked_in_table_is_what_the_generator_writes() -> None:
    text = OPERATIONS.read_text()
    assert BEGIN in text and END in text
    section = text[text.index(BEGIN) + len(BEGIN) + 1 : text.index(END)]
    assert section == render(build_parser()), "run: .venv/bin/python scripts/flags_doc.py"


def test_every_flag_and_variable_appears_in_the_table() -> None:
    text = OPERATIONS.read_text()
    section = text[text.index(BEGIN) : text.index(END)]
    for row in rows(build_parser()):
        assert f"`{row.command}`" in section
        assert f"| `{row.flags}` | `{row.variable}` |" in section, row


def test_one_flag_spelling_means_one_variable_in_every_command() -> None:
    """``--prefix`` was the topic prefix in one command and an id prefix in another."""
    variables: dict[str, set[str]] = {}
    for row in rows(build_parser()):
        variables.setdefault(row.flags, set()).add(str(row.variable))
    assert {flag: v for flag, v in variables.items() if len(v) > 1} == {}


def test_the_generator_script_checks_the_docs() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "flags_doc.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("argv", "variable", "value", "dest", "expected"),
    [
        (["up"], "TETHER_SIM_LATENCY", "0.5", "sim_latency", 0.5),
        (["up"], "TETHER_SIM_FAILURE_RATE", "0.25", "sim_failure_rate", 0.25),
        (["send", "d", "echo"], "TETHER_SEND_TIMEOUT", "12", "timeout", 12.0),
        (["send", "d", "echo"], "TETHER_SEND_WAIT", "1", "wait", True),
        (["provision", "--out", "f"], "TETHER_SIM_ID_PREFIX", "pump-", "id_prefix", "pump-"),
        (["device"], "TETHER_DEVICE_HANDLERS", "a:b,c:d", "handlers", ["a:b", "c:d"]),
        (["bridge"], "TETHER_DEFAULT_TTL", "none", "default_ttl", None),
    ],
)
def test_variables_feed_their_flags(
    monkeypatch: pytest.MonkeyPatch,
    argv: list[str],
    variable: str,
    value: str,
    dest: str,
    expected: object,
) -> None:
    monkeypatch.setenv(variable, value)
    assert getattr(build_parser().parse_args(argv), dest) == expected


def test_a_flag_wins_over_its_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TETHER_SEND_TIMEOUT", "12")
    args = build_parser().parse_args(["send", "d", "echo", "--timeout", "3"])
    assert args.timeout == 3.0


def test_wait_help_says_how_long_it_waits() -> None:
    result = subprocess.run(
        [*TETHER, "send", "--help"], capture_output=True, text=True, timeout=30, check=True
    )
    help_text = " ".join(result.stdout.split())
    assert "--timeout (default 330 s)" in help_text
    assert "TETHER_SEND_TIMEOUT, default 330" in help_text


def test_provision_takes_id_prefix_and_still_the_old_prefix_spelling() -> None:
    parser = build_parser()
    assert parser.parse_args(["provision", "--out", "f", "--id-prefix", "p-"]).id_prefix == "p-"
    assert parser.parse_args(["provision", "--out", "f", "--prefix", "q-"]).id_prefix == "q-"
    assert parser.parse_args(["provision", "--out", "f"]).id_prefix == "sim-"


def test_version_comes_from_package_metadata() -> None:
    result = subprocess.run(
        [*TETHER, "--version"], capture_output=True, text=True, timeout=30, check=True
    )
    assert result.stdout.strip() == f"tether {importlib.metadata.version('tether')}"


def test_plurals() -> None:
    assert [plural(n, "device") for n in (0, 1, 2)] == ["0 devices", "1 device", "2 devices"]


def markdown_references(path: Path) -> list[str]:
    text = path.read_text()
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text)
    named = re.findall(r"`([^`\s]+\.md)`", text)
    return [ref for ref in links + named if not re.match(r"[a-z]+:", ref)]


@pytest.mark.parametrize(
    "doc", [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))], ids=lambda p: p.name
)
def test_docs_point_only_to_files_in_the_repository(doc: Path) -> None:
    missing = [
        ref
        for ref in markdown_references(doc)
        if not ref.startswith("artifacts/")  # written by the chaos suite when it runs
        and not (doc.parent / ref).exists()
        and not (ROOT / ref).exists()
    ]
    assert missing == []
