"""The per-member GRPO steps that `moelab demo`, `moelab deficit` and `moelab posttrain` share: a member's
recipe inside a job's run directory, and training it unless an identical run already finished.

They live below the three jobs (which import them, never each other), so no job module imports another.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from core.config import load_config
from core.errors import UserError
from moelab.recipes import placed_in, run_dir


def member_slug(name: str) -> str:
    """A model name or path as one folder name (the last 80 characters that are safe in a path)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name.strip("/")).strip("_")[-80:]


def finished_grpo_run(grpo_cfg: Any) -> dict | None:
    """The summary of a GRPO run already finished from the same base weights and recipe, else None.

    A run trained from other weights (a toy member retrained in place) or another recipe is moved
    aside to `<run_dir>.stale-N`, not deleted, so the rerun starts clean and nothing is lost.
    """
    from rl.train import run_identity

    out = run_dir(grpo_cfg)
    summary_path = out / "summary.json"
    if not summary_path.is_file():
        return None
    summary = json.loads(summary_path.read_text())
    if summary.get("identity") == run_identity(grpo_cfg):
        return summary
    n = 1
    while out.with_name(f"{out.name}.stale-{n}").exists():
        n += 1
    stale = out.rename(out.with_name(f"{out.name}.stale-{n}"))
    print(f"[grpo] {out} was trained from other weights or another recipe: moved to {stale}; training again",
          flush=True)
    return None


def member_grpo_recipe(recipe: str, overrides: list[str], member: str, job_dir: Path,
                       values: Mapping[str, Any] | None = None) -> Any:
    """The GRPO recipe of one family member inside a job's run directory `job_dir` (the demo's, the deficit's,
    a posttrain seed's): its run directory `job_dir/grpo/<member>` and registered name `<member>-grpo-<job_dir
    name>`. `overrides`: the person's `key=value` strings; `values`: what the calling job sets besides (a mapping,
    e.g. `{"grpo": {"seed": 1}}`), both applied before the member's own values."""
    from omegaconf import OmegaConf

    from rl.schema import GRPORecipe

    slug = member_slug(member)
    own = {"model": {"name": member}, **placed_in("grpo", job_dir / "grpo" / slug),
           "checkpoints": {"register_name": f"{slug}-grpo-{job_dir.name}"}}
    return load_config(recipe, overrides, schema=GRPORecipe, values=OmegaConf.merge(values or {}, own))


def train_or_reuse(grpo_cfg: Any) -> str:
    """Train the recipe unless `finished_grpo_run` finds it done; the trained model's index name (or folder)."""
    from rl.launch import run_recipe

    summary = finished_grpo_run(grpo_cfg)
    if summary is None:
        if run_recipe(grpo_cfg) != 0:
            raise UserError(f"GRPO of {grpo_cfg.model.name} failed; see {run_dir(grpo_cfg)}")
        summary = json.loads((run_dir(grpo_cfg) / "summary.json").read_text())
    return summary.get("registered") or summary["final_dir"]
