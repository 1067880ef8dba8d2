"""The `grpo` recipe: every knob of a GRPO run, validated before any model loads.

Sections mirror the order a run is built in (model -> data -> rewards -> GRPO -> MoE -> eval ->
checkpoints -> launch). The `grpo` section uses TRL's `GRPOConfig` field names one to one and is
passed to it by name, so a reader who knows TRL knows the recipe, and anything this schema does not
name can still reach TRL through `grpo.extra` (a free-form mapping passed straight to `GRPOConfig`).
The few GRPOConfig fields that belong to another section (`max_steps`, `moe.router_aux_loss_coef`,
`checkpoints.save_steps`, ...) are mapped in `rl.train.grpo_config_kwargs`. TRL's own resolved
config (every default included) is written to `grpo_config.json` beside the run, because TRL's
defaults (`loss_type=dapo`, `beta=0`, importance-sampling correction on) differ from the study's
verl run and have changed between releases.

Every value is checked when the recipe loads, before any model does (core.config): choices are
`Literal` types, ranges are field bounds, and `GRPORecipe.cross_check` holds the rules between fields,
TRL's own among them. Those are restated here, not obtained by building a `GRPOConfig`, for three
reasons: building one initializes accelerate's process state (and, under `accelerate launch`, the
process group) as a side effect; its checks see the world size of the process that builds it (1 on a
login node), not the recipe's `launch` processes, so the divisibility a run of 8 processes would fail
passes; and `bf16` is refused on a machine without a GPU. tests/test_recipe_values.py holds each
restated rule to TRL: TRL must reject the same values.

This module is imported by `moelab config show` and must stay cheap: dataclasses only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Optional

from core.config import Dtype, RunInOutputDir, config_field
from core.errors import UserError
from inference.jobs.trackers import TRACKERS
from tasks.prompts import RENDER_STYLES

# TRL 1.16 GRPOConfig `loss_type` help ("Supported values are ..."); tests hold the list to TRL's.
LossType = Literal["grpo", "dr_grpo", "dapo", "bnpo", "cispo", "sapo", "luspo", "vespo"]
# transformers' `SchedulerType` values (TrainingArguments converts the string); tests hold them to it.
SchedulerName = Literal["linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup",
                        "inverse_sqrt", "reduce_lr_on_plateau", "cosine_with_min_lr", "cosine_warmup_with_min_lr",
                        "warmup_stable_decay", "greedy"]


@dataclass
class ModelSection:
    name: str = config_field(help="checkpoint index name (e.g. d1024-E16-k2, toy-d64-E8-k2), hub id or local "
                                  "directory of a saved Mixtral")
    revision: Optional[str] = config_field(None, help="hub revision (ignored for local directories)")
    dtype: Dtype = config_field("float32", help="weights dtype for training: float32 on CPU; bfloat16 on GPUs")
    gradient_checkpointing: bool = config_field(False, help="recompute activations in backward (the study: on)")
    allow_pure_bf16: bool = config_field(False, help="train bfloat16 weights without fp32 master weights (no "
                                         "DeepSpeed): most AdamW updates at LR 5e-6 fall below bf16 resolution, so "
                                         "the run is refused unless this says it is intended")


@dataclass
class DataSection:
    dataset: str = config_field(help="train problems: gsm8k, math, toy, or a JSONL path (tasks.datasets)")
    split: str = config_field("train", help="split of `dataset` to train on")
    task: Optional[str] = config_field(None, help="answer checker task of the train problems (gsm8k, math, toy, or a "
                                                  "dataset name that has one); null: the dataset table "
                                                  "(tasks.datasets) or the JSONL rows' `task` field")
    limit: Optional[int] = config_field(None, help="use only the first N problems (after shuffling)", at_least=1)
    shuffle_seed: Optional[int] = config_field(0, help="shuffle problems with this seed before `limit`", at_least=0)
    prompt_style: Literal[RENDER_STYLES] = config_field(
        "chat", help="chat: raw question as one user message through the chat "
        "template (the study's GRPO); qa: 'Question: q\\nAnswer:'")
    max_prompt_length: int = config_field(512, help="drop problems whose prompt is longer (tokens); verl's "
                                                    "filter_overlong_prompts. TRL 1.16 has no prompt length knob",
                                                    at_least=1)
    toy_num_problems: int = config_field(20000, help="toy dataset only: problems generated for the train split",
                                         at_least=1)


@dataclass
class RewardSection:
    names: list = config_field(["accuracy"], help="reward functions by name (rewards.get_reward_funcs)")
    weights: Optional[list] = config_field(None, help="one weight per reward (default: all 1.0)")
    options: dict = config_field({}, help="keyword options per reward name, e.g. {accuracy: {execute_code: true}}")


@dataclass
class GRPOSection:
    """TRL `GRPOConfig` fields, same names and meaning: `rl.train.grpo_config_kwargs` passes every field
    but `extra` to `GRPOConfig` by name (tests/test_grpo.py checks that TRL still has each one)."""

    num_generations: int = config_field(8, help="completions sampled per prompt (the group size G)", at_least=2)
    per_device_train_batch_size: int = config_field(8, help="completions per device per micro-batch", at_least=1)
    gradient_accumulation_steps: int = config_field(1, help="micro-batches per optimizer update", at_least=1)
    steps_per_generation: Optional[int] = config_field(None, help="optimizer updates per generation batch "
                                                                  "(verl: ppo_mini_batch split); default = grad accum",
                                                                  at_least=1)
    num_iterations: int = config_field(1, help="passes over each generation batch (PPO epochs, mu)", at_least=1)
    loss_type: LossType = config_field("grpo", help="grpo | dr_grpo | dapo | bnpo | cispo | sapo | luspo | vespo "
                                                    "(TRL's default is dapo; we default to grpo)")
    beta: float = config_field(0.0, help="KL coefficient to the reference policy (k3 estimator); 0 skips the "
                                         "reference model", at_least=0)
    epsilon: float = config_field(0.2, help="PPO clip range (lower)", at_least=0)
    epsilon_high: Optional[float] = config_field(None, help="upper clip range (DAPO clip-higher); default = epsilon",
                                                 at_least=0)
    scale_rewards: Literal["group", "batch", "none"] = config_field(
        "group", help="group | batch | none: divide advantages by the reward std")
    max_completion_length: int = config_field(256, help="max new tokens per completion", at_least=1)
    temperature: float = config_field(1.0, help="sampling temperature of rollouts", above=0)
    top_p: float = config_field(1.0, help="nucleus sampling of rollouts", above=0, at_most=1)
    mask_truncated_completions: bool = config_field(False, help="exclude truncated completions from the loss")
    learning_rate: float = config_field(1e-6, help="peak learning rate (AdamW)", above=0)
    lr_scheduler_type: SchedulerName = config_field(
        "constant", help="transformers scheduler name (constant, cosine, linear)")
    warmup_steps: float = config_field(0, help="LR warm-up: steps (int) or a fraction of all steps (float < 1)",
                                       at_least=0)
    weight_decay: float = config_field(0.0, help="AdamW weight decay", at_least=0)
    max_grad_norm: float = config_field(1.0, help="gradient clipping norm", above=0)
    num_train_epochs: float = config_field(1.0, help="epochs over the train problems (ignored when max_steps > 0)",
                                           above=0)
    logging_steps: int = config_field(1, help="log TRL metrics every N optimizer steps", at_least=1)
    seed: int = config_field(0, help="global seed (data order, sampling, init of anything random)", at_least=0)
    use_vllm: bool = config_field(False, help="generate rollouts with vLLM instead of HF generate")
    vllm_mode: Literal["colocate", "server"] = config_field(
        "colocate", help="colocate (engine inside each training process) | server "
        "(`vllm serve` on dedicated GPUs: rl/cluster.py)")
    vllm_gpu_memory_utilization: float = config_field(0.3, help="colocate: fraction of GPU memory for vLLM", above=0,
                                                      at_most=1)
    vllm_tensor_parallel_size: int = config_field(1, help="colocate: tensor-parallel size of each engine", at_least=1)
    vllm_server_host: str = config_field("0.0.0.0", help="server mode: host of the vLLM server")
    vllm_server_port: int = config_field(8000, help="server mode: port of the vLLM server", at_least=1, at_most=65535)
    vllm_importance_sampling_correction: bool = config_field(True, help="TRL's truncated importance sampling for "
                                                                        "vLLM/trainer logprob mismatch")
    bf16: bool = config_field(False, help="bf16 autocast (GPUs)")
    report_to: list[Literal[TRACKERS]] = config_field(
        [], help="trackers: wandb, trackio, tensorboard (empty: none; `pip install "
        "-e .[trackers]`). They get TRL's metrics, moe/* and eval/<set>/accuracy")
    run_name: Optional[str] = config_field(None, help="the run's name in the trackers (null: TRL's default)")
    project: str = config_field("moelab", help="tracker project: trackio's project and wandb's (unless "
                                               "WANDB_PROJECT is set)")
    extra: dict = config_field({}, help="any other GRPOConfig field, passed through unchanged")


@dataclass
class MoESection:
    router_aux_loss_coef: float = config_field(help="load-balancing loss weight added to the GRPO loss. REQUIRED "
                                                    "on purpose: TRL otherwise takes the model config's value "
                                                    "(0.01 for the released models); the study's GRPO used 0",
                                                    at_least=0)
    output_router_logits: bool = config_field(False, help="return router logits from every forward (TRL requests "
                                                          "them itself for the loss when router_aux_loss_coef > 0)")
    log_expert_load_steps: int = config_field(10, help="log per-layer expert load / router entropy every N "
                                                       "steps (0: off)", at_least=0)


@dataclass
class EvalSection:
    datasets: list = config_field([], help="greedy-accuracy eval sets (dataset names or JSONL paths)")
    split: str = config_field("test", help="split of each eval dataset")
    limit: Optional[int] = config_field(64, help="problems per eval set (a fixed subset, shuffled with seed 0); "
                                                 "null: the whole split", at_least=1)
    steps: int = config_field(0, help="evaluate every N steps (0: only before and after training)", at_least=0)
    max_new_tokens: int = config_field(256, help="greedy generation length", at_least=1)
    batch_size: int = config_field(32, help="prompts per generate() call", at_least=1)


@dataclass
class CheckpointSection:
    save_steps: int = config_field(50, help="save a resumable checkpoint (weights, optimizer, RNG, data "
                                            "position) every N steps", at_least=1)
    save_total_limit: Optional[int] = config_field(3, help="keep only the newest N checkpoints (null: keep all)",
                                                   at_least=1)
    register: bool = config_field(True, help="register final and periodic checkpoints in the checkpoint index")
    register_name: Optional[str] = config_field(None, help="index name prefix (default: <model>-grpo-<run dir>)")
    push_to_hub: bool = config_field(False, help="at the end, upload the final model with its model card (base "
                                                 "model, recipe, eval table, reward rule) to hub_model_id")
    hub_model_id: Optional[str] = config_field(None, help="hub repository for push_to_hub, e.g. me/d512-E8-k2-grpo")
    hub_private: bool = config_field(True, help="create the hub repository as private")


@dataclass
class LaunchSection:
    num_processes: int = config_field(1, help="training processes; > 1 relaunches through `accelerate launch`",
                                      at_least=1)
    accelerate_config: Optional[str] = config_field(None, help="accelerate/DeepSpeed yaml (configs/deepspeed/); "
                                                               "setting it also relaunches")
    num_machines: int = config_field(1, help="nodes (multi-node: see scripts/slurm_grpo.sh)", at_least=1)
    machine_rank: int = config_field(0, help="this node's rank (multi-node)", at_least=0)
    main_process_ip: Optional[str] = config_field(None, help="rank-0 node address (multi-node)")
    main_process_port: int = config_field(29512, help="rendezvous port", at_least=1, at_most=65535)


@dataclass
class GRPORecipe(RunInOutputDir):
    kind: str = config_field("grpo", help="recipe type")
    output_dir: str = config_field(help="run directory: checkpoints, logs, eval.csv, resolved configs")
    max_steps: int = config_field(-1, help="optimizer steps (-1: num_train_epochs decides)", at_least=-1)
    resume: bool = config_field(False, help="continue from the newest checkpoint in output_dir")
    threads: int = config_field(0, help="torch CPU threads per process (0: torch's default). 1 for tiny models on "
                                        "shared cores: more threads spin-wait and can be many times slower",
                                        at_least=0)
    model: ModelSection = config_field(ModelSection, help="policy model")
    data: DataSection = config_field(DataSection, help="train problems and prompt format")
    rewards: RewardSection = config_field(RewardSection, help="reward functions")
    grpo: GRPOSection = config_field(GRPOSection, help="TRL GRPOConfig knobs")
    moe: MoESection = config_field(MoESection, help="router loss and expert-load logging")
    eval: EvalSection = config_field(EvalSection, help="greedy accuracy during training")
    checkpoints: CheckpointSection = config_field(CheckpointSection, help="saving and registering")
    launch: LaunchSection = config_field(LaunchSection, help="processes and DeepSpeed")

    @staticmethod
    def cross_check(cfg: Any) -> None:
        """Rules between fields, each one line naming the keys: TRL's GRPOConfig/GRPOTrainer checks (trl 1.16
        `grpo_config.py` __post_init__, `grpo_trainer.py` __init__) at the recipe's world size, and the lab's."""
        g, launch, extra = cfg.grpo, cfg.launch, cfg.grpo.extra
        world = launch.num_processes * launch.num_machines
        if launch.machine_rank >= launch.num_machines:
            raise UserError(f"launch.machine_rank={launch.machine_rank} must be below launch.num_machines="
                            f"{launch.num_machines}")
        global_batch = g.per_device_train_batch_size * world
        generation_batch = extra.get("generation_batch_size")
        if generation_batch is not None and g.steps_per_generation is not None:  # grpo_config.py: "can not be both"
            raise UserError("grpo.extra.generation_batch_size and grpo.steps_per_generation cannot both be set (TRL)")
        if generation_batch is not None and generation_batch % global_batch:
            raise UserError(f"grpo.extra.generation_batch_size={generation_batch} must be divisible by "
                            f"grpo.per_device_train_batch_size x {world} processes = {global_batch} (TRL)")
        if generation_batch is None:
            generation_batch = global_batch * (g.steps_per_generation or g.gradient_accumulation_steps)
        if generation_batch % g.num_generations:  # grpo_config.py: the generation batch holds whole prompt groups
            raise UserError(f"grpo.num_generations={g.num_generations} must divide the generation batch: "
                            f"grpo.per_device_train_batch_size={g.per_device_train_batch_size} x {world} process(es) "
                            f"(launch) x grpo.steps_per_generation (default: grpo.gradient_accumulation_steps) = "
                            f"{generation_batch} completions (TRL)")
        if g.use_vllm and g.vllm_mode == "colocate" and world % g.vllm_tensor_parallel_size:  # vllm_generation.py
            raise UserError(f"grpo.vllm_tensor_parallel_size={g.vllm_tensor_parallel_size} must divide the {world} "
                            f"training process(es) (launch): colocated engines are groups of whole processes (TRL)")
        if g.epsilon_high is not None and g.epsilon_high < g.epsilon:
            raise UserError(f"grpo.epsilon_high={g.epsilon_high} must be at least grpo.epsilon={g.epsilon} "
                            f"(clip-higher widens the upper clip only)")
        weights, names = cfg.rewards.weights, cfg.rewards.names
        if weights and len(weights) != len(names):  # [] = all 1.0; grpo_trainer.py: "Number of reward weights"
            raise UserError(f"key 'rewards.weights' has {len(weights)} value(s) for {len(names)} reward(s) in "
                            f"rewards.names")
        sampling_mode = extra.get("vllm_importance_sampling_mode", "sequence_mask")  # GRPOConfig's default
        if g.loss_type == "vespo" and g.use_vllm and g.vllm_importance_sampling_correction \
                and sampling_mode not in ("token_truncate", "token_mask"):  # grpo_trainer.py: VESPO's requirement
            raise UserError(f"grpo.loss_type=vespo with grpo.use_vllm needs grpo.extra.vllm_importance_sampling_mode="
                            f"token_truncate or token_mask (got {sampling_mode}), or "
                            f"grpo.vllm_importance_sampling_correction=false (TRL)")

