"""Compare two recorded runs seed by seed (conceptlib.report.compare) and write a table.

Writes ``results/quick-bf16/comparison.md`` (``--out``).

    .venv/bin/python scripts/compare_runs.py results/quick-fp32 results/quick-bf16 \
        --names fp32 bf16 --out results/quick-bf16/comparison.md
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from conceptlib.files import atomic_write_text
from conceptlib.report.compare import compare, format_comparison


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("a", type=Path, help="folder with metrics.json (reference)")
    parser.add_argument("b", type=Path, help="folder with metrics.json (candidate)")
    parser.add_argument("--names", nargs=2, default=("a", "b"))
    parser.add_argument("--out", type=Path, help="write the table here too")
    args = parser.parse_args()
    runs = []
    for folder in (args.a, args.b):
        try:
            runs.append(json.loads((folder / "metrics.json").read_text()))
        except (OSError, json.JSONDecodeError) as exc:
            print(f"error: {folder / 'metrics.json'}: {exc}", file=sys.stderr)
            return 2
    table = format_comparison(compare(*runs), *args.names)
    print(table)
    if args.out:
        atomic_write_text(args.out, table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
