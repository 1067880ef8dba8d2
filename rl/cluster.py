"""What the cluster launch scripts (`scripts/slurm_grpo.sh`, `scripts/pbs_grpo.sh`) need to know of a
GRPO recipe, and the vLLM server a `vllm_mode: server` recipe trains against.

    python -m rl.cluster plan RECIPE.yaml [key=value ...]     # prints "server PORT" or "none PORT"
    python -m rl.cluster serve [--tensor-parallel-size N] [--data-parallel-size M] RECIPE.yaml [key=value ...]

`plan` validates the recipe (a bad key fails the job at once, before any node is set up) and tells
the script whether to start a server. `serve` becomes `vllm serve` for the recipe's model: the
model's local directory or hub id with its revision, the policy's dtype (the server must sample
from the precision the trainer computes logprobs in, as `rl.trainer.colocated_engine_options` does
for the colocated engine), and a max length of prompt + completion (vLLM would otherwise size its
KV cache for the model's full context).

Why not `trl vllm-serve`: TRL 1.16 deprecates it (it only execs `vllm serve` now). We build the same
command line with TRL's own `trl.scripts.vllm_serve.build_command`, so the flags its client relies on
(`--weight-transfer-config` for the weight push, `--logprobs-mode processed_logprobs`,
`--max-logprobs -1`) stay whatever the pinned TRL says, and exec it with `VLLM_SERVER_DEV_MODE=1`
(the weight-transfer endpoints live behind vLLM's dev mode), exactly what TRL's deprecation notice
tells users to run.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from core.config import load_config
from core.errors import UserError, exit_status
from rl.schema import GRPORecipe


def uses_server(cfg: Any) -> bool:
    """True when the recipe generates rollouts on a separate `vllm serve` (TRL's server mode)."""
    return bool(cfg.grpo.use_vllm) and cfg.grpo.vllm_mode == "server"


def plan_line(cfg: Any) -> str:
    """One line for the launch scripts: `server PORT` or `none PORT`."""
    return f"{'server' if uses_server(cfg) else 'none'} {cfg.grpo.vllm_server_port}"


def serve_command(cfg: Any, tensor_parallel_size: int = 1, data_parallel_size: int = 1,
                  host: str = "0.0.0.0", gpu_memory_utilization: float = 0.9) -> list[str]:
    """The `vllm serve` command line (starting with this Python) for the recipe's model."""
    from trl.scripts.vllm_serve import ScriptArguments, build_command

    from checkpoints_index.loading import model_source

    if not uses_server(cfg):
        raise UserError("rl.cluster serve: the recipe does not use a vLLM server; set grpo.use_vllm=true "
                        "grpo.vllm_mode=server")
    args = ScriptArguments(
        model=model_source(str(cfg.model.name), cfg.model.revision), revision=cfg.model.revision,
        tensor_parallel_size=tensor_parallel_size, data_parallel_size=data_parallel_size,
        host=host, port=int(cfg.grpo.vllm_server_port), gpu_memory_utilization=gpu_memory_utilization,
        dtype=str(cfg.model.dtype), max_model_len=int(cfg.data.max_prompt_length + cfg.grpo.max_completion_length),
    )
    return build_command(args)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rl.cluster", description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["plan", "serve"])
    parser.add_argument("--tensor-parallel-size", type=int, default=1, help="serve: GPUs per server (TP)")
    parser.add_argument("--data-parallel-size", type=int, default=1, help="serve: data-parallel engines")
    parser.add_argument("--gpu-memory-utilization", type=float, default=0.9, help="serve: fraction of GPU memory")
    parser.add_argument("recipe")
    parser.add_argument("overrides", nargs="*")
    args, extra = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    overrides = list(args.overrides) + extra

    def job() -> int:
        cfg = load_config(args.recipe, overrides, schema=GRPORecipe)
        if args.action == "plan":
            print(plan_line(cfg), flush=True)
            return 0
        command = serve_command(cfg, args.tensor_parallel_size, args.data_parallel_size,
                                gpu_memory_utilization=args.gpu_memory_utilization)
        print("[serve] VLLM_SERVER_DEV_MODE=1 vllm " + " ".join(command[command.index("serve"):]), flush=True)
        os.execve(command[0], command, {**os.environ, "VLLM_SERVER_DEV_MODE": "1"})
        return 0  # not reached

    return exit_status(job)


if __name__ == "__main__":
    sys.exit(main())
