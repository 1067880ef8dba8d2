"""Run a GRPO recipe in this process, or relaunch it as N processes through `accelerate launch`.

One process (the default) trains in-process: easiest to debug, and what the toy recipe does on a
laptop. `launch.num_processes > 1` or `launch.accelerate_config` writes the resolved recipe to the
run directory and starts `accelerate launch --config_file <yaml> -m rl.train <resolved recipe>`, so
every rank reads exactly the recipe that was validated here. On a machine without CUDA it exports
`DS_ACCELERATOR=cpu` (DeepSpeed otherwise looks for a GPU) and the workers pick the gloo backend
(rl.train.build_grpo_config), the combination that works on CPU (README.md, "Platform notes").
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from core.config import save_resolved_config
from core.errors import UserError

LAB_ROOT = Path(__file__).resolve().parents[1]


def needs_relaunch(cfg: Any) -> bool:
    return cfg.launch.num_processes > 1 or cfg.launch.num_machines > 1 or bool(cfg.launch.accelerate_config)


def cuda_available() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


def resolve_accelerate_config(path: str | None, on_gpu: bool) -> Path:
    """The accelerate yaml to use: as given (relative to cwd, then to the lab), else ZeRO-2 for the device."""
    if not path:
        path = "configs/deepspeed/zero2.yaml" if on_gpu else "configs/deepspeed/zero2_cpu.yaml"
    for candidate in (Path(path), LAB_ROOT / path):
        if candidate.is_file():
            return candidate.resolve()
    raise UserError(f"launch.accelerate_config: file not found: {path} (see configs/deepspeed/)")


def launch_command(cfg: Any, recipe_path: Path, on_gpu: bool) -> list[str]:
    launch = cfg.launch
    command = [sys.executable, "-m", "accelerate.commands.launch",
               "--config_file", str(resolve_accelerate_config(launch.accelerate_config, on_gpu)),
               "--num_processes", str(launch.num_processes * launch.num_machines),
               "--num_machines", str(launch.num_machines), "--machine_rank", str(launch.machine_rank),
               "--main_process_port", str(launch.main_process_port)]
    if launch.main_process_ip:
        command += ["--main_process_ip", launch.main_process_ip]
    return command + ["-m", "rl.train", str(recipe_path)]


def relaunch(cfg: Any) -> int:
    """Start the distributed run and wait for it; returns the launcher's exit status."""
    on_gpu = cuda_available()
    out = Path(cfg.output_dir)
    recipe_path = save_resolved_config(cfg, out, name="launch_recipe.yaml")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [env.get("PYTHONPATH"), str(LAB_ROOT)]))
    if not on_gpu:
        env.setdefault("DS_ACCELERATOR", "cpu")
    command = launch_command(cfg, recipe_path, on_gpu)
    print("[grpo] " + " ".join(command), flush=True)
    return subprocess.call(command, env=env)


def run_recipe(cfg: Any) -> int:
    if needs_relaunch(cfg):
        status = relaunch(cfg)
        if status != 0:
            raise UserError(f"distributed GRPO run failed (exit status {status}); see the log above and "
                            f"{cfg.output_dir}")
        return 0
    from rl.train import train

    train(cfg)
    return 0
