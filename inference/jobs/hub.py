"""Uploads to the Hugging Face hub: one commit of chosen files plus a card, and a sweep as a dataset.

    push_sweep("outputs/sweeps/toy", "me/toy-ttc-sweep")      # what `moelab push SWEEP_DIR --repo-id ...` does

`push_files` is the one place the lab talks to the hub (`rl.hub` pushes GRPO models through it):
`HfApi.create_repo` (exist_ok) then a single `HfApi.create_commit`, so a repository never holds half
an upload, and a test can check exactly what would be uploaded by patching those two methods. A
sweep becomes a dataset with two configurations, `samples` (scored.parquet: one row per sample,
answer cluster, correct, score, tokens) and `metrics` (metrics.csv: every strategy x k with its CI),
so `datasets.load_dataset(repo, "metrics")` reads it; `completions=True` adds the sample store's
shards (the raw completion text).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from core.errors import UserError

SWEEP_FILES = ("scored.parquet", "metrics.csv", "config.yaml")


def push_files(repo_id: str, files: dict[str, Path | bytes], card: str, *, repo_type: str = "model",
               private: bool = True, message: str = "moelab upload") -> list[str]:
    """Create `repo_id` if needed and commit `files` (path in repo -> local file or bytes) and `card` as
    README.md in one commit; returns the paths committed. Hub errors become one `UserError` line."""
    from huggingface_hub import CommitOperationAdd, HfApi
    from huggingface_hub.errors import HfHubHTTPError

    operations = [CommitOperationAdd(path_in_repo="README.md", path_or_fileobj=card.encode())]
    operations += [CommitOperationAdd(path_in_repo=name,
                                      path_or_fileobj=data if isinstance(data, bytes) else str(data))
                   for name, data in sorted(files.items()) if name != "README.md"]
    api = HfApi()
    try:
        api.create_repo(repo_id, repo_type=repo_type, private=private, exist_ok=True)
        api.create_commit(repo_id, operations, commit_message=message, repo_type=repo_type)
    except (HfHubHTTPError, OSError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(f"upload to the hub repository {repo_id} failed: {first} (log in with `hf auth login` or "
                        f"set HF_TOKEN; the files are still on disk)") from None
    return [op.path_in_repo for op in operations]


def markdown_table(rows: list[dict], columns: list[str]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def metrics_summary(metrics_csv: Path, ks: tuple[int, ...] = (1, 8, 32)) -> str:
    """The card's table: per model/dataset/setting, pass@k and majority@k at a few k, with 95% CIs."""
    with metrics_csv.open() as f:
        rows = list(csv.DictReader(f))
    shown = []
    for row in rows:
        if row.get("strategy") in ("pass", "majority") and int(float(row["k"])) in ks:
            shown.append({**row, "accuracy": f"{float(row['accuracy']):.3f} [{float(row['ci_low']):.3f}, "
                                             f"{float(row['ci_high']):.3f}]"})
    columns = [c for c in ("model", "dataset", "setting", "strategy", "k", "accuracy", "num_problems")
               if not shown or c in shown[0]]
    return markdown_table(shown, columns) if shown else "(no pass/majority rows in metrics.csv)"


def sweep_card(sweep_dir: Path, repo_id: str) -> str:
    recipe = (sweep_dir / "config.yaml").read_text() if (sweep_dir / "config.yaml").is_file() else ""
    metrics = sweep_dir / "metrics.csv"
    return "\n".join([
        "---", "tags: [moelab, test-time-compute, mixture-of-experts]", "configs:",
        "- config_name: samples", "  data_files: scored.parquet",
        "- config_name: metrics", "  data_files: metrics.csv", "---", "",
        f"# {repo_id.split('/')[-1]}", "",
        f"A test-time compute sweep made with moelab (`moelab sweep`, run `{sweep_dir.name}`): "
        "every sample's answer cluster, correctness and score (`samples`), and pass@k / majority@k / best-of-n "
        "with 95% bootstrap CIs over problems (`metrics`).", "",
        "## Accuracy", "", metrics_summary(metrics) if metrics.is_file() else "(no metrics.csv)", "",
        "## Recipe", "", "```yaml", recipe.rstrip(), "```", "",
    ])


def sweep_files(sweep_dir: Path, completions: bool = False) -> dict[str, Path]:
    files = {name: sweep_dir / name for name in SWEEP_FILES if (sweep_dir / name).is_file()}
    if "scored.parquet" not in files and "metrics.csv" not in files:
        raise UserError(f"{sweep_dir}: no scored.parquet or metrics.csv; pass a sweep's output directory "
                        f"(outputs/sweeps/<run>) after its score/aggregate stages")
    if completions:
        store = sweep_dir / "samples"
        files.update({str(p.relative_to(sweep_dir)): p for p in sorted(store.rglob("*.parquet"))})
    return files


def push_sweep(sweep_dir: str | Path, repo_id: str, *, private: bool = True, completions: bool = False,
               dry_run: bool = False) -> dict[str, Any]:
    """Upload a sweep's samples and metrics as a hub dataset; returns {repo_id, files, card}."""
    directory = Path(sweep_dir)
    files = sweep_files(directory, completions)
    card = sweep_card(directory, repo_id)
    if not dry_run:
        push_files(repo_id, files, card, repo_type="dataset", private=private,
                   message=f"moelab sweep {directory.name}")
    return {"repo_id": repo_id, "files": ["README.md", *sorted(files)], "card": card}
