"""The import arrows point down: the ground floor imports no other package, the roof is imported
by none, and the device package never imports the broker's or the server's side."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("tether", "tether_cli", "mosquitto", "broker_bridge", "devices", "ui_gateway")

# package -> the project packages it may not import
FORBIDDEN = {
    "tether": {"tether_cli", "mosquitto", "broker_bridge", "devices", "ui_gateway"},
    "mosquitto": {"tether_cli", "broker_bridge", "devices", "ui_gateway"},
    "devices": {"tether_cli", "mosquitto", "broker_bridge", "ui_gateway"},
    "broker_bridge": {"tether_cli", "devices", "ui_gateway"},
    "ui_gateway": {"tether_cli", "devices", "broker_bridge", "mosquitto"},  # only CommandService
}


def imported_packages(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module.split(".")[0])
    return found & set(PACKAGES)


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_no_import_points_up(package: str) -> None:
    wrong = {
        str(path.relative_to(ROOT)): sorted(imported_packages(path) & FORBIDDEN[package])
        for path in sorted((ROOT / package).rglob("*.py"))
    }
    assert {path: names for path, names in wrong.items() if names} == {}


def test_the_ground_floor_reads_no_command_line() -> None:
    """Flags are declared on settings fields in ``tether/``; argparse lives in the roof alone."""
    users = [
        str(path.relative_to(ROOT))
        for path in sorted((ROOT / "tether").rglob("*.py"))
        if "import argparse" in path.read_text()
    ]
    assert users == []
