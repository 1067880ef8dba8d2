"""`moelab`: one command line for the whole lab; each subcommand lives beside the code it drives.

Subcommand modules expose `add_arguments(parser)` and `run(args) -> int` and are cheap to import
(heavy libraries load inside `run`), so `moelab --help` answers at once. A `UserError` becomes one
`error: ...` line and exit status 2, never a traceback (`MOELAB_DEBUG=1` prints it whole:
`core.errors.exit_status`).
"""

from __future__ import annotations

import argparse
import importlib
import sys

from core.errors import exit_status
from core.platform import prepare_vllm_environment, skip_heap_teardown_at_exit
from moelab import __version__

# name -> (module with add_arguments/run, one-line help). Order = order in `moelab --help`.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "checkpoints": ("checkpoints_index.cli", "list, filter, show and materialize the indexed checkpoints"),
    "config": ("moelab.config_cli", "print a recipe merged with key=value overrides and validated"),
    "toy": ("moelab.toy_cli", "train and evaluate the toy MoE sparsity family"),
    "score": ("rewards.cli", "score completions (JSONL) against gold answers: status, reward, pred, cluster"),
    "rule-audit": ("moelab.rule_audit", "how often each scoring rule (lab, study, study_grpo) accepts a dataset's "
                                        "own reference solutions"),
    "sweep": ("inference.sweep.cli", "test-time compute sweep: generate, score, aggregate and plot"),
    "aggregate": ("inference.ttc.aggregate_cli", "pass@k, majority@k, best-of-n, weighted vote with bootstrap CIs"),
    "plot": ("inference.ttc.plot_cli", "accuracy vs samples / tokens / FLOPs, and the cross-model view"),
    "eval": ("inference.instruments.lm_eval_cli",
             "few-shot benchmarks through lm-evaluation-harness (the study's suites)"),
    "taskloss": ("inference.instruments.taskloss_cli",
                 "the study's task loss: bits per answer token and byte, {prompt, answer}"),
    "grpo": ("rl.cli", "GRPO post-training from a recipe (TRL + DeepSpeed + vLLM)"),
    "demo": ("moelab.demo", "the main job: sweep, GRPO and sweep again over a model family, with a report"),
    "posttrain": ("moelab.posttrain", "GRPO beside its SFT-on-gold control, per member over seeds, with paired CIs"),
    "push": ("moelab.push_cli", "upload a sweep (dataset) or a finished GRPO run (model + card) to the hub"),
    "rehearse": ("moelab.rehearse", "dry run of a recipe on random-init stand-ins, cut to a few steps; sizes the real run"),
    "deficit": ("moelab.deficit", "the reasoning deficit: accuracy vs task loss and TPP, and whether TTC or GRPO "
                                  "closes the gap"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="moelab", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"moelab {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        module = importlib.import_module(module_name)
        command = sub.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(command)
        command.set_defaults(handler=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    prepare_vllm_environment()
    skip_heap_teardown_at_exit()
    parser = build_parser()
    # `key=value` overrides may come after flags (`moelab demo RECIPE --quick a.b=1`); argparse stops
    # filling positionals at the first flag, so leftovers that look like overrides are appended.
    args, extra = parser.parse_known_args(argv)
    if extra:
        if isinstance(getattr(args, "overrides", None), list) and all("=" in x and not x.startswith("-") for x in extra):
            args.overrides.extend(extra)
        else:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if not getattr(args, "handler", None):
        parser.print_help()
        return 0
    try:
        return exit_status(lambda: args.handler(args))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `moelab checkpoints | head`
        return 0


if __name__ == "__main__":
    sys.exit(main())
