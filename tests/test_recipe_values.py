"""Every recipe value is checked before anything loads (issue #23, item 6).

For every recipe kind, bad values (a range, a choice, a rule between fields, a sub-recipe's value) go
through the real command line and must stop with exit status 2 and one line naming the key, while the
job's runner, which would load models, is replaced by a tripwire and the run's output directory stays
unmade. The GRPO rules the lab restates from TRL (rl/schema.py says why it does not build a
`GRPOConfig`) are held to TRL here: TRL must reject the same values, so a TRL upgrade that changes a
rule fails a test instead of drifting.
"""

import dataclasses
import typing
from pathlib import Path

import pytest

from core.config import describe_fields, load_config
from core.errors import UserError

REPO = Path(__file__).resolve().parents[1]

# module attribute each command's `run` reaches after its recipe loaded (where models would load)
RUNNERS = {
    "grpo": "rl.launch.run_recipe", "sweep": "inference.sweep.run.run_sweep",
    "eval": "inference.instruments.lm_eval_run.run_eval",
    "taskloss": "inference.instruments.taskloss.run_taskloss", "deficit": "moelab.deficit.run_deficit",
    "demo": "moelab.demo.run_demo", "posttrain": "moelab.posttrain.run_posttrain",
    "toy train": "checkpoints_index.toy.train.train_family", "toy grid": "inference.toy.grid.run_grid",
    "score": "rewards.cli.read_rows",
}
RANGE = ("at least", "greater than", "at most", "less than")
CHOICE = ("expected one of",)

# (command, recipe, bad override, key the message names, words it contains)
BAD_VALUES = [
    # the three: each used to fail after the model loaded
    ("grpo", "configs/grpo/toy.yaml", "grpo.learning_rate=-1", "grpo.learning_rate", RANGE),
    ("grpo", "configs/grpo/toy.yaml", "grpo.num_generations=0", "grpo.num_generations", RANGE),
    ("eval", "configs/eval/toy.yaml", "limit=-5", "limit", RANGE),
    ("grpo", "configs/grpo/toy.yaml", "grpo.top_p=1.5", "grpo.top_p", RANGE),
    ("grpo", "configs/grpo/toy.yaml", "grpo.loss_type=grpoo", "grpo.loss_type", CHOICE),
    ("grpo", "configs/grpo/toy.yaml", "grpo.lr_scheduler_type=cosin", "grpo.lr_scheduler_type", CHOICE),
    ("grpo", "configs/grpo/toy.yaml", "model.dtype=bf16", "model.dtype", CHOICE),
    ("grpo", "configs/grpo/toy.yaml", "grpo.report_to=[wandbb]", "grpo.report_to[0]", CHOICE),
    ("grpo", "configs/grpo/toy.yaml", "grpo.num_generations=3", "grpo.num_generations", ("divide",)),
    ("grpo", "configs/grpo/toy.yaml", "rewards.weights=[1,2]", "rewards.weights", ("rewards.names",)),
    ("eval", "configs/eval/toy.yaml", "backend.gpu_memory_utilization=1.5", "backend.gpu_memory_utilization", RANGE),
    ("eval", "configs/eval/toy.yaml", "backend.type=vlm", "backend.type", CHOICE),
    ("eval", "configs/eval/toy.yaml", "backend.batch_size=big", "backend.batch_size", ("auto:N",)),
    ("eval", "configs/eval/toy.yaml", "num_fewshot.gsm8k=-1", "num_fewshot.gsm8k", RANGE),  # a mapping's values
    ("taskloss", "configs/taskloss/toy.yaml", "limit=0", "limit", RANGE),
    ("taskloss", "configs/taskloss/toy.yaml", "backend.type=vllmm", "backend.type", CHOICE),
    ("sweep", "configs/sweep/toy.yaml", "sampling.num_samples=0", "sampling.num_samples", RANGE),
    ("sweep", "configs/sweep/toy.yaml", "sampling.temperatures=[0.6,-1]", "sampling.temperatures[1]", RANGE),
    ("sweep", "configs/sweep/toy.yaml", "scoring.rule=labb", "scoring.rule", CHOICE),
    ("sweep", "configs/sweep/toy.yaml", "aggregate.strategies=[pass,best]", "aggregate.strategies[1]", CHOICE),
    ("sweep", "configs/sweep/toy.yaml", "stages=[generate,scor]", "stages[1]", CHOICE),
    ("deficit", "configs/deficit/toy.yaml", "analysis.level=1.5", "analysis.level", RANGE),
    ("deficit", "configs/deficit/toy.yaml", "analysis.strategy=best", "analysis.strategy", CHOICE),
    ("deficit", "configs/deficit/toy.yaml", "taskloss.overrides=[limit=0]", "limit", RANGE),  # a later sub-job's value
    ("demo", "configs/demo/toy.yaml", "sft_control.learning_rate=0", "sft_control.learning_rate", RANGE),
    ("demo", "configs/demo/toy.yaml", "strategies=[pass,maj]", "strategies[1]", CHOICE),
    ("demo", "configs/demo/toy.yaml", "deficit_overrides=[analysis.level=2]", "analysis.level", RANGE),  # last stage
    ("posttrain", "configs/posttrain/toy.yaml", "workers=0", "workers", RANGE),
    ("posttrain", "configs/posttrain/toy.yaml", "grpo_overrides=[grpo.loss_type=foo]", "grpo.loss_type", CHOICE),
    ("toy train", "configs/toy/train.yaml", "optim.lr=0", "optim.lr", RANGE),
    ("toy train", "configs/toy/train.yaml", "task.fact_share=1", "task.fact_share", RANGE),
    ("toy grid", "configs/toy/grid.yaml", "top_k=1", "top_k", RANGE),
    ("toy grid", "configs/toy/grid.yaml", "workers=0", "workers", RANGE),
    ("toy grid", "configs/toy/grid.yaml", "extra_members=[{regime: 20k, experts: 8, top_k: 1}]",
     "extra_members[0].top_k", RANGE),  # a list of sections: each checked
    ("score", None, "deadline_s=0", "deadline_s", RANGE),
    ("score", None, "rule=studdy", "rule", CHOICE),
]


@pytest.mark.parametrize("command, recipe, bad, key, words", BAD_VALUES, ids=lambda v: v if isinstance(v, str) else "")
def test_a_bad_value_stops_before_anything_loads(command, recipe, bad, key, words, tmp_path, monkeypatch, capsys):
    from moelab.cli import main

    def tripwire(*args, **kwargs):
        raise AssertionError(f"`moelab {command}` went past its recipe check")

    monkeypatch.chdir(REPO)
    module, name = RUNNERS[command].rsplit(".", 1)
    monkeypatch.setattr(f"{module}.{name}", tripwire)
    out = tmp_path / "out"
    if command == "score":
        argv = ["score", "--task", "gsm8k", "--in", str(tmp_path / "in.jsonl"), "--out", str(out), bad]
    else:
        output = [] if command.startswith("toy") or command == "posttrain" else [f"output_dir={out}"]
        argv = [*command.split(), recipe, *output, bad]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert f"'{key}'" in err or f"{key}=" in err, err
    assert any(word in err for word in words), err
    assert not out.exists()


def _grpo(overrides: list[str]):
    from rl.schema import GRPORecipe

    return load_config(REPO / "configs/grpo/toy.yaml", overrides, schema=GRPORecipe)


def test_the_generation_batch_is_checked_at_the_recipes_world_size():
    """TRL checks at the world size of the process that builds GRPOConfig; the recipe knows the real one."""
    fits = ["grpo.per_device_train_batch_size=4", "grpo.num_generations=8"]
    _grpo([*fits, "launch.num_processes=2"])
    with pytest.raises(UserError, match=r"grpo.num_generations=8 must divide .* = 12 completions"):
        _grpo([*fits, "launch.num_processes=3"])
    _grpo([*fits, "launch.num_processes=3", "grpo.steps_per_generation=2"])  # 24 completions: 3 groups
    with pytest.raises(UserError, match="vllm_tensor_parallel_size=2 must divide the 3 training"):
        _grpo([*fits, "launch.num_processes=3", "grpo.steps_per_generation=2", "grpo.use_vllm=true",
               "grpo.vllm_tensor_parallel_size=2"])
    with pytest.raises(UserError, match="launch.machine_rank=2 must be below launch.num_machines=2"):
        _grpo(["launch.num_machines=2", "launch.machine_rank=2"])


# Each restated TRL rule: the overrides the lab rejects, and TRL's GRPOConfig must reject them too.
TRL_RULES = [
    ["grpo.num_generations=3"],  # grpo_config.py: generation batch divisible by num_generations
    ["grpo.num_generations=1"],  # grpo_config.py: GRPO needs at least 2 generations
    ["grpo.extra={generation_batch_size: 256}", "grpo.steps_per_generation=2"],  # not both
    ["grpo.extra={generation_batch_size: 200}"],  # divisible by the global batch (128 x 1)
    ["grpo.lr_scheduler_type=cosin"],  # transformers: SchedulerType(...)
]


@pytest.mark.parametrize("overrides", TRL_RULES, ids=lambda o: " ".join(o))
def test_trl_rejects_what_the_recipe_rejects(overrides, tmp_path):
    from omegaconf import OmegaConf
    from trl import GRPOConfig

    from rl.schema import GRPORecipe
    from rl.train import grpo_config_kwargs

    with pytest.raises(UserError):
        _grpo([f"output_dir={tmp_path}", *overrides])
    # the same values, past the recipe's checks, straight into TRL (world size 1, as the recipe's launch says)
    base = OmegaConf.to_object(_grpo([f"output_dir={tmp_path}"]))
    assert isinstance(base, GRPORecipe)
    kwargs = {**grpo_config_kwargs(base), "disable_tqdm": True}
    GRPOConfig(**kwargs)  # the shipped values pass TRL
    for item in overrides:
        key, value = item.split("=", 1)
        field = key.removeprefix("grpo.")
        if field == "extra":
            kwargs.update(OmegaConf.create(value))
        else:
            kwargs[field] = OmegaConf.from_dotlist([f"v={value}"]).v
    with pytest.raises(ValueError):
        GRPOConfig(**kwargs)


def test_grpo_choices_are_trls():
    """`loss_type` and `lr_scheduler_type` are declared as the lab's Literal types; they must be TRL's and
    transformers' own lists, so an upgrade that adds or drops one fails here."""
    import re

    from transformers.trainer_utils import SchedulerType
    from trl import GRPOConfig

    from rl.schema import LossType, SchedulerName

    trl_help = next(f for f in dataclasses.fields(GRPOConfig) if f.name == "loss_type").metadata["help"]
    supported = trl_help.split("Supported values are", 1)[1].split(". ", 1)[0]
    assert set(typing.get_args(LossType)) == set(re.findall(r"'(\w+)'", supported))
    assert set(typing.get_args(SchedulerName)) == {s.value for s in SchedulerType}
    default_mode = next(f for f in dataclasses.fields(GRPOConfig) if f.name == "vllm_importance_sampling_mode").default
    assert default_mode == "sequence_mask"  # rl.schema's VESPO rule assumes TRL's default


def test_every_choice_list_is_imported_not_restated():
    """The sweep's choices are the tuples of the code that acts on them (one definition per concept)."""
    from inference.generation.backends import BACKEND_NAMES
    from inference.sweep.schema import SweepConfig
    from inference.ttc.aggregate import ESTIMATORS, VOTE_WEIGHTS
    from inference.ttc.estimators import STRATEGIES
    from rewards.rules import RULES
    from tasks.prompts import PROMPT_STYLES, SHOT_MODES

    choices = {key: type_name for key, type_name, _ in describe_fields(SweepConfig)}
    for key, values in [("scoring.rule", RULES), ("backend.type", BACKEND_NAMES), ("aggregate.estimator", ESTIMATORS),
                        ("aggregate.vote_weight", VOTE_WEIGHTS), ("data.prompt", PROMPT_STYLES),
                        ("data.shots", SHOT_MODES), ("aggregate.strategies", STRATEGIES)]:
        assert choices[key].removeprefix("list[").removesuffix("]") == "|".join(values), key
