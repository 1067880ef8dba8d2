"""A GRPO run's model card, and its upload to the hub (`checkpoints.push_to_hub`, or `moelab push RUN_DIR`).

Why the lab writes its own card and pushes once at the end, instead of TRL's `push_to_hub=True`:
TRL's card names the trainer and the dataset but not what this study needs to read a result — the
base checkpoint and its weights version, the reward rule that decided "correct", the greedy eval
table with the paired before -> after CI, the resolved recipe — and TRL pushes every checkpoint
mid-run, which a 52B MoE run does not want. The card is written to `final/README.md` of every run
(pushed or not); the upload is one commit through `inference.jobs.hub.push_files`.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from core.errors import UserError
from inference.jobs.hub import markdown_table, push_files

RUN_FILES = ("config.yaml", "eval.csv", "summary.json", "versions.json", "grpo_config.json")


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def base_model_id(name: str, revision: str | None = None) -> str | None:
    """The base model's hub id for the card's `base_model:` (None for a local-only checkpoint)."""
    from checkpoints_index.loading import model_source

    try:
        source = model_source(name, revision)
    except UserError:
        return None
    return None if Path(source).exists() else source


def eval_table(run_dir: Path) -> str:
    path = run_dir / "eval.csv"
    if not path.is_file():
        return "(no greedy eval in this run: eval.datasets was empty)"
    with path.open() as f:
        rows = [{**r, "accuracy": f"{float(r['accuracy']):.3f}"} for r in csv.DictReader(f)]
    return markdown_table(rows, ["step", "dataset", "accuracy", "num_problems"])


def model_card(run_dir: str | Path, repo_id: str | None = None) -> str:
    """Markdown card of a finished run: base model, reward rule, eval table and change, training, recipe."""
    from omegaconf import OmegaConf

    from rl.report import describe

    run = Path(run_dir)
    if not (run / "config.yaml").is_file():
        raise UserError(f"{run}: no config.yaml; pass a GRPO run directory (output_dir of `moelab grpo`)")
    cfg = OmegaConf.load(run / "config.yaml")
    summary, versions = _read_json(run / "summary.json"), _read_json(run / "versions.json")
    base = str(cfg.model.name)
    hub_base = base_model_id(base, cfg.model.get("revision"))
    identity = summary.get("identity") or {}
    rewards = OmegaConf.to_container(cfg.rewards, resolve=True)
    rule = summary.get("reward_rule") or str(((rewards.get("options") or {}).get("accuracy") or {}).get("rule", "lab"))
    changes = [f"- {describe(name, change)}" for name, change in (summary.get("eval_change") or {}).items()]
    front = ["---", "library_name: transformers", "tags: [moelab, grpo, trl, mixture-of-experts, mixtral]"]
    if hub_base:
        front.append(f"base_model: {hub_base}")
    title = (repo_id or str(cfg.checkpoints.get("hub_model_id") or "") or f"{Path(base).name}-grpo").split("/")[-1]
    return "\n".join(front + [
        "---", "", f"# {title}", "",
        f"`{base}` post-trained with GRPO (TRL {versions.get('trl', '?')}) by moelab: "
        f"{summary.get('step', '?')} optimizer steps on `{cfg.data.dataset}` ({cfg.data.split}).", "",
        "## Base model", "",
        f"- name: `{base}`" + (f" (hub: [{hub_base}](https://huggingface.co/{hub_base}))" if hub_base else ""),
        f"- weights version: `{identity.get('base_weights') or cfg.model.get('revision') or 'unknown'}`",
        f"- recipe hash: `{identity.get('recipe_sha256', 'unknown')}`", "",
        "## Reward", "",
        f"- rule: `{rule}`; reward functions {rewards.get('names')} with weights "
        f"{rewards.get('weights') or 'all 1.0'} and options `{json.dumps(rewards.get('options') or {})}`", "",
        "## Greedy evaluation", "", eval_table(run), "",
        *(changes or ["(no before -> after change: fewer than two eval steps)"]), "",
        "## Training", "",
        f"- steps {summary.get('step', '?')}, wall time {summary.get('train_seconds', '?')} s, median step "
        f"{summary.get('median_step_time_s', '?')} s"
        + (f", peak GPU memory {summary['peak_gpu_memory_gib']} GiB" if "peak_gpu_memory_gib" in summary else ""),
        "- versions: " + ", ".join(f"{k} {v}" for k, v in versions.items() if v), "",
        "## Recipe", "", "```yaml", (run / "config.yaml").read_text().rstrip(), "```", "",
    ])


def write_model_card(run_dir: str | Path, final_dir: str | Path, repo_id: str | None = None) -> Path:
    path = Path(final_dir) / "README.md"
    path.write_text(model_card(run_dir, repo_id))
    return path


def check_push_target(cfg: Any) -> None:
    """Fail before training, not after it, when push_to_hub has nowhere to push."""
    if cfg.checkpoints.push_to_hub and not cfg.checkpoints.hub_model_id:
        raise UserError("checkpoints.push_to_hub=true needs checkpoints.hub_model_id (e.g. me/d512-E8-k2-grpo)")


def push_run(run_dir: str | Path, repo_id: str, *, private: bool = True, dry_run: bool = False) -> dict[str, Any]:
    """Upload a finished run's final model, its card and run records; returns {repo_id, files, card}."""
    run = Path(run_dir)
    final = run / "final"
    if not (final / "config.json").is_file():
        raise UserError(f"{run}: no final model ({final}/config.json); the run has not finished")
    card = model_card(run, repo_id)
    files: dict[str, Path | bytes] = {str(p.relative_to(final)): p for p in sorted(final.rglob("*"))
                                      if p.is_file() and p.name != "README.md"}
    files.update({f"moelab/{name}": run / name for name in RUN_FILES if (run / name).is_file()})
    if not dry_run:
        push_files(repo_id, files, card, repo_type="model", private=private, message=f"moelab GRPO run {run.name}")
    return {"repo_id": repo_id, "files": ["README.md", *sorted(files)], "card": card}
