"""Compare two runs' output folders file by file: the "behaviour unchanged" check of a refactor.

    python dev/compare_outputs.py BEFORE_DIR AFTER_DIR --before-commit REV --out docs/results/X.md

Every CSV (and report/findings text) under BEFORE_DIR is compared with the file at the same relative path
under AFTER_DIR: byte for byte first; where the bytes differ, value for value (cells parsed as floats
equal within 1e-12 relative, everything else as text), so a float printed differently is told apart from
a different number. Columns that measure the run itself rather than its result (wall time, dates,
paths to the run folder) are listed in VOLATILE and left out of the value comparison, and the report
says so. The markdown written names both trees' commits.
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from core.provenance import provenance, provenance_line  # noqa: E402

PATTERNS = ("*.csv", "findings.json", "report.md")
VOLATILE = {"seconds", "wall_s", "elapsed_s", "date", "timestamp", "run_dir", "output_dir", "path"}


def _cells_equal(a: str, b: str) -> bool:
    if a == b:
        return True
    try:
        x, y = float(a), float(b)
    except ValueError:
        return False
    return (math.isnan(x) and math.isnan(y)) or math.isclose(x, y, rel_tol=1e-12, abs_tol=0.0)


def compare_csv(before: Path, after: Path) -> str:
    """'values equal' or the first difference, ignoring VOLATILE columns."""
    with before.open(newline="") as f:
        rows_b = list(csv.DictReader(f))
    with after.open(newline="") as f:
        rows_a = list(csv.DictReader(f))
    if len(rows_b) != len(rows_a):
        return f"{len(rows_b)} rows before, {len(rows_a)} after"
    if rows_b and set(rows_b[0]) != set(rows_a[0]):
        return f"columns differ: {sorted(set(rows_b[0]) ^ set(rows_a[0]))}"
    for i, (rb, ra) in enumerate(zip(rows_b, rows_a)):
        for key in rb:
            if key not in VOLATILE and not _cells_equal(rb[key] or "", ra[key] or ""):
                return f"row {i + 2}, column {key}: {rb[key]!r} before, {ra[key]!r} after"
    return "values equal"


def compare(before_dir: Path, after_dir: Path) -> list[tuple[str, str]]:
    results = []
    files = sorted({p for pattern in PATTERNS for p in before_dir.rglob(pattern)})
    for b in files:
        rel = b.relative_to(before_dir)
        a = after_dir / rel
        if not a.is_file():
            results.append((str(rel), "missing after"))
        elif b.read_bytes() == a.read_bytes():
            results.append((str(rel), "identical bytes"))
        elif b.suffix == ".csv":
            results.append((str(rel), compare_csv(b, a)))
        else:
            results.append((str(rel), "text differs"))
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument("--before-commit", required=True, help="the commit the BEFORE tree ran")
    parser.add_argument("--what", default="", help="the command both trees ran, for the report")
    parser.add_argument("--out", type=Path, help="markdown report (printed when absent)")
    args = parser.parse_args(argv)
    results = compare(args.before, args.after)
    same = sum(r in ("identical bytes", "values equal") for _, r in results)
    lines = [provenance_line(provenance()), "",
             f"# Outputs before ({args.before_commit}) and after, compared file by file", "",
             f"Command run in both trees: `{args.what}`." if args.what else "",
             f"{same} of {len(results)} files equal ({sum(r == 'identical bytes' for _, r in results)} byte for byte); "
             f"columns left out of the value comparison: {', '.join(sorted(VOLATILE))}.", "",
             "| file | result |", "|---|---|", *(f"| `{f}` | {r} |" for f, r in results)]
    text = "\n".join(lines) + "\n"
    if args.out:
        args.out.write_text(text)
    print(text, end="")
    return 0 if same == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
