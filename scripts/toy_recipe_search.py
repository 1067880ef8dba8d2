"""Issue 27, step 1: which toy training recipe makes seeds agree? One E, a few seeds, one table.

Each candidate is the toy grid (`inference.toy.grid`, `configs/toy/grid.yaml`) cut to one E and a few
seeds in one data regime (`--regime`: 20k, the default, or 1k, the data-limited one), with the candidate's
`train_overrides`, measured on the VALIDATION split (choices are made there; test numbers come once, for the
chosen recipe). The table has one row per candidate: seeds, mean and SD across seeds of held-out (validation)
reasoning accuracy, its 95% t-interval, memorization accuracy (mean, SD, interval, per seed), final train loss,
and the minutes the candidate took on this machine. A row is one candidate at one (E, k) in one regime: run the
script once per E and regime.

    .venv/bin/python scripts/toy_recipe_search.py --experts 8 --seeds 0,1,2,3 \
        baseline: lr1e-3:optim.lr=1e-3 steps2000:optim.steps=2000 --out docs/results/toy-recipe-search.csv

A candidate is `NAME:` (the base recipe) or `NAME:key=value,key=value` (dotted train-recipe keys). Members
already trained and measured under outputs/toy_recipe_search/NAME are reused (the grid resumes), so the
table can be rebuilt or extended without retraining; a candidate re-read that way keeps the minutes of the
run that trained it. The provenance file beside the table lists every invocation that wrote rows.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

COLUMNS = ["candidate", "overrides", "experts", "top_k", "regime", "eval_split", "seeds", "reasoning_mean",
           "reasoning_sd", "reasoning_low", "reasoning_high", "reasoning_per_seed", "memorization_mean",
           "memorization_sd", "memorization_low", "memorization_high", "memorization_per_seed", "train_loss_mean",
           "minutes"]


REGIMES = {"20k": 20000, "1k": 1000}  # the toy grid's two data regimes (configs/toy/grid2.yaml)


def row_key(row: dict) -> tuple[str, str, str, str]:
    """A row is one candidate at one (E, k) in one regime: the same candidate is tried at several E and regimes."""
    return row["candidate"], str(row["experts"]), str(row["top_k"]), row.get("regime") or "20k"


def parse_candidate(text: str) -> tuple[str, dict[str, str]]:
    name, _, spec = text.partition(":")
    if not name or not all(c.isalnum() or c in "-_." for c in name):
        raise SystemExit(f"candidate {text!r}: NAME:key=value,... with a plain NAME")
    overrides = dict(item.split("=", 1) for item in spec.split(",") if item)
    return name, overrides


def spread(metric: str, values: list[float]) -> dict:
    """Mean, SD across seeds, 95% t-interval and the per-seed values, in percent."""
    from core.stats import t_interval

    mean, low, high = t_interval(values)
    return {f"{metric}_mean": round(100 * mean, 2),
            f"{metric}_sd": round(100 * statistics.stdev(values), 2) if len(values) > 1 else "",
            f"{metric}_low": round(100 * low, 2), f"{metric}_high": round(100 * high, 2),
            f"{metric}_per_seed": " ".join(f"{100 * v:.1f}" for v in values)}


def run_candidate(name: str, overrides: dict[str, str], args: argparse.Namespace, before: dict | None) -> dict:
    """One candidate's row; `before` is its row in the table already, whose minutes stand when this run
    only re-read members trained earlier."""
    from core.config import load_config
    from inference.toy.grid import run_grid
    from inference.toy.schema import ToyGridConfig

    root = Path(args.work_dir) / name
    grid = load_config(ROOT / "configs" / "toy" / "grid.yaml",
                       [f"experts=[{args.experts}]", f"top_k={args.top_k}", f"seeds=[{args.seeds}]",
                        f"regimes=[{{name: {args.regime}, num_train_problems: {REGIMES[args.regime]}}}]",
                        "extra_members=[]",
                        "eval_split=validation", f"num_test={args.num_validation}", f"num_seen={args.num_seen}",
                        f"workers={args.workers}", f"models_dir={root / 'models'}",
                        f"results={root / f'grid-{args.regime}-E{args.experts}-k{args.top_k}.csv'}"],
                       schema=ToyGridConfig, values={"train_overrides": overrides})
    paths = run_grid(grid)
    rows = list(csv.DictReader(paths["table"].open()))
    reasoning = [float(r["reasoning_accuracy"]) for r in rows]
    memorization = [float(r["memorization_accuracy"]) for r in rows]
    timing = json.loads(paths["provenance"].read_text())
    minutes = round(timing["seconds"] / 60, 1)
    if before is not None and timing["trained_this_run"] == 0:
        minutes = before["minutes"]
    return {"candidate": name, "overrides": ",".join(f"{k}={v}" for k, v in overrides.items()) or "(base recipe)",
            "experts": args.experts, "top_k": args.top_k, "regime": args.regime, "eval_split": "validation",
            "seeds": len(rows), **spread("reasoning", reasoning), **spread("memorization", memorization),
            "train_loss_mean": round(statistics.mean(float(r["train_loss"]) for r in rows), 4),
            "minutes": minutes}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("candidates", nargs="+", help="NAME: or NAME:key=value,key=value")
    parser.add_argument("--experts", type=int, default=8)
    parser.add_argument("--top-k", type=int, default=2)
    parser.add_argument("--seeds", default="0,1,2,3")
    parser.add_argument("--regime", choices=sorted(REGIMES), default="20k", help="the data regime (unique problems)")
    parser.add_argument("--num-validation", type=int, default=500, help="validation problems per member")
    parser.add_argument("--num-seen", type=int, default=100, help="own training problems measured per member")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--work-dir", default="outputs/toy_recipe_search")
    parser.add_argument("--out", type=Path, required=True, help="the table (CSV); rows of other candidates kept")
    args = parser.parse_args()
    candidates = [parse_candidate(c) for c in args.candidates]

    from core.files import atomic_write_csv
    from core.provenance import write_sidecar

    table = {row_key(row): row for row in csv.DictReader(args.out.open())} if args.out.is_file() else {}
    for name, overrides in candidates:
        key = row_key({"candidate": name, "experts": args.experts, "top_k": args.top_k, "regime": args.regime})
        row = run_candidate(name, overrides, args, table.get(key))
        table[key] = row
        print(f"{name} ({args.regime}, E{args.experts}): reasoning (validation) {row['reasoning_mean']}% "
              f"sd {row['reasoning_sd']} over "
              f"{row['seeds']} seeds [{row['reasoning_per_seed']}], memorization {row['memorization_mean']}%, "
              f"{row['minutes']} min", flush=True)
        atomic_write_csv(args.out, list(table.values()), COLUMNS)
    # one provenance record per invocation, the earlier ones kept (rows come from several runs)
    from core.provenance import provenance, sidecar_path

    sidecar = sidecar_path(args.out)
    earlier = json.loads(sidecar.read_text()) if sidecar.is_file() else None
    runs = [] if earlier is None else earlier.get("runs", [earlier])
    write_sidecar(args.out, {"runs": [*runs, {**provenance(), "candidates": [name for name, _ in candidates]}]})


if __name__ == "__main__":
    main()
