"""`moelab toy train|eval`: rebuild and measure the toy sparsity family. Cheap to import (no torch).

In the application layer because it drives two layers: training (`checkpoints_index.toy.train`) and
measuring through the lab's generation and scoring (`inference.toy.evaluate`).

    moelab toy train [RECIPE.yaml] [key=value ...]   # default recipe: configs/toy/train.yaml's values
    moelab toy eval [--models DIR ...] [--num-problems 500] [--samples 8] [--temperature 0.8] [--out DIR]
    moelab toy grid [RECIPE.yaml] [key=value ...]    # default recipe: configs/toy/grid.yaml's values
"""

from __future__ import annotations

import argparse
from pathlib import Path

from checkpoints_index.index import TOY_MODELS_DIR as MODELS_DIR
from core.errors import UserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="toy_command", metavar="{train,eval,grid}")
    train = sub.add_parser("train", help="train every member of the family from a recipe",
                           description="Train the toy family (kind: toy_train). Without a recipe the schema "
                                       "defaults apply; they equal configs/toy/train.yaml.")
    train.add_argument("recipe", nargs="?", default=None, help="recipe YAML (kind: toy_train); optional")
    train.add_argument("overrides", nargs="*", default=[], help="dotted key=value overrides, e.g. optim.steps=20")
    evaluate = sub.add_parser("eval", help="measure greedy accuracy, pass@1 and pass@8 of each member",
                              description="Writes toy_eval.md and toy_eval.csv (the README's table).")
    evaluate.add_argument("--models", nargs="*", type=Path, default=None,
                          help=f"member directories (default: every member under {MODELS_DIR})")
    evaluate.add_argument("--num-problems", type=int, default=500, help="toy test problems (default 500)")
    evaluate.add_argument("--samples", type=int, default=8, help="samples per problem for pass@k (>= 8)")
    evaluate.add_argument("--temperature", type=float, default=0.8, help="sampling temperature (default 0.8)")
    evaluate.add_argument("--seed", type=int, default=0, help="test split seed and sampling seed")
    evaluate.add_argument("--max-steps", type=int, default=3, help="task difficulty: most steps (as trained)")
    evaluate.add_argument("--max-operand", type=int, default=30, help="task difficulty: largest operand")
    evaluate.add_argument("--backend", choices=["vllm", "hf"], default="vllm",
                          help="generation backend (default vllm, as the sweeps)")
    evaluate.add_argument("--threads", type=int, default=1, help="hf backend: torch threads (1 is robust on shared "
                                                                 "cores)")
    evaluate.add_argument("--out", type=Path, default=Path("outputs/toy_eval"), help="output directory")
    grid = sub.add_parser("grid", help="train and measure the sparsity grid over E, seeds and data regimes",
                          description="The toy sparsity grid (kind: toy_grid): per member train loss, held-out "
                                      "reasoning, seen-problem and memorization accuracy and both task losses; "
                                      "a summary over seeds and a figure. Resumable.")
    grid.add_argument("recipe", nargs="?", default=None, help="recipe YAML (kind: toy_grid); optional")
    grid.add_argument("overrides", nargs="*", default=[], help="dotted key=value overrides, e.g. seeds=[0]")
    parser.set_defaults(toy_parser=parser)


def committed_members() -> list[Path]:
    """The shipped members' directories, ordered by (experts, top-k) as in the README's table."""
    import json

    def grid_position(config_path: Path) -> tuple[int, int]:
        config = json.loads(config_path.read_text())
        return config.get("num_local_experts", 0), config.get("num_experts_per_tok", 0)

    return [p.parent for p in sorted(MODELS_DIR.glob("*/config.json"), key=grid_position)]


def run(args: argparse.Namespace) -> int:
    if args.toy_command == "train":
        return _train(args)
    if args.toy_command == "eval":
        return _eval(args)
    if args.toy_command == "grid":
        return _grid(args)
    args.toy_parser.print_help()
    return 2


def _recipe_and_overrides(args: argparse.Namespace) -> tuple[str | None, list[str]]:
    recipe, overrides = args.recipe, list(args.overrides)
    if recipe is not None and "=" in recipe and not Path(recipe).is_file():
        recipe, overrides = None, [recipe, *overrides]  # `moelab toy train seed=1`: no recipe given
    return recipe, overrides


def _train(args: argparse.Namespace) -> int:
    from checkpoints_index.toy.schema import ToyTrainConfig
    from core.config import load_config

    cfg = load_config(*_recipe_and_overrides(args), schema=ToyTrainConfig)
    from checkpoints_index.toy.train import train_family

    train_family(cfg)
    return 0


def _eval(args: argparse.Namespace) -> int:
    model_dirs = args.models if args.models else committed_members()
    for model_dir in model_dirs:
        if not (Path(model_dir) / "config.json").is_file():
            raise UserError(f"--models: {model_dir} has no config.json")
    from inference.toy.evaluate import evaluate_family

    if args.backend == "hf" and args.threads:
        import torch

        torch.set_num_threads(args.threads)
    evaluate_family(model_dirs, args.out, num_problems=args.num_problems, seed=args.seed,
                    num_samples=args.samples, temperature=args.temperature, max_steps=args.max_steps,
                    max_operand=args.max_operand, backend=args.backend)
    print(f"wrote {args.out / 'toy_eval.md'} and {args.out / 'toy_eval.csv'}")
    return 0


def _grid(args: argparse.Namespace) -> int:
    from core.config import load_config
    from inference.toy.schema import ToyGridConfig

    cfg = load_config(*_recipe_and_overrides(args), schema=ToyGridConfig)
    from inference.toy.grid import run_grid

    run_grid(cfg)
    return 0
