#!/usr/bin/env python3
"""Write the flag and variable table of docs/operations.md from `tether`'s parser.

.venv/bin/python scripts/flags_doc.py           # rewrite the generated section
.venv/bin/python scripts/flags_doc.py --check   # exit 1 if the docs differ from the code
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tether_cli.flag_table import render, replace_section  # noqa: E402
from tether_cli.main import build_parser  # noqa: E402

DOC = ROOT / "docs" / "operations.md"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only compare, do not write")
    args = parser.parse_args()
    current = DOC.read_text()
    wanted = replace_section(current, render(build_parser()))
    if args.check:
        if current != wanted:
            print(f"{DOC} is out of date: run scripts/flags_doc.py", file=sys.stderr)
            return 1
        return 0
    if current != wanted:
        DOC.write_text(wanted)
        print(f"updated {DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
