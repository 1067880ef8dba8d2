"""Recipe schema of `moelab taskloss` (kind `taskloss`): the study's task loss. Cheap to import.

Defaults are taskloss-eval's (`taskloss_eval/task_loss.py`): vLLM `generate` on `prompt + answer` with
`temperature=0`, `max_tokens=1`, `prompt_logprobs=1`; the study's GSM8K set is `gsm8k-4shot`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Optional

from core.config import MISSING, DtypeOrAuto, RunInOutputDir, config_field
from core.errors import UserError


@dataclass
class TasklossBackendConfig:
    type: Literal["vllm", "hf"] = config_field(
        "vllm", "vllm (prompt_logprobs, as taskloss-eval) or hf (batched forward pass)")
    dtype: DtypeOrAuto = config_field(
        "auto", "weights dtype (auto, float32, bfloat16); auto = the checkpoint's on a GPU, "
        "float32 on a CPU")
    batch_size: int = config_field(8, "hf: examples per forward pass (sorted by length, left-padded)", at_least=1)
    tensor_parallel_size: int = config_field(1, "vLLM tensor parallel GPUs (taskloss-eval's --tp)", at_least=1)
    max_model_len: Optional[int] = config_field(None, "vLLM context limit; null = the model's", at_least=1)
    enforce_eager: Optional[bool] = config_field(None, "vLLM eager mode; null = true on a CPU, vLLM's on a GPU")
    engine_kwargs: dict[str, Any] = config_field({}, "extra keyword arguments passed to vllm.LLM as is")


@dataclass
class TasklossConfig(RunInOutputDir):
    kind: str = config_field("taskloss", "recipe type")
    models: list[str] = config_field(MISSING, "checkpoint index names, hub ids or local checkpoint directories")
    dataset: str = config_field(MISSING, "gsm8k-4shot (the study's set), triviaqa-4shot, toy, toy_facts, or a JSONL "
                                         "file with prompt/answer fields")
    output_dir: str = config_field("outputs/taskloss", "<output_dir>/taskloss.csv and <output_dir>/<model>/<task>/"
                                                       "examples.jsonl; rerunning resumes")
    limit: Optional[int] = config_field(None, "score only the first `limit` examples; null = all", at_least=1)
    num_shots: Optional[int] = config_field(None, "demonstrations per prompt for a named set; null = its default "
                                                  "(4 for gsm8k-4shot and triviaqa-4shot, 0 for toy and toy_facts)",
                                                  at_least=0)
    shots_seed: int = config_field(42, "seed of the demonstration draws (the study's --seed 42)", at_least=0)
    data_files: dict[str, str] = config_field({}, "triviaqa-4shot offline: data_files.train=FILE "
                                                  "data_files.validation=FILE (question, answer.aliases)")
    chunk_size: int = config_field(256, "examples scored and appended to examples.jsonl at a time (a kill loses one)",
                                   at_least=1)
    backend: TasklossBackendConfig = config_field(TasklossBackendConfig, "scoring backend")

    @staticmethod
    def cross_check(cfg: Any) -> None:
        """A run with no model would write an empty table and report success."""
        if not cfg.models:
            raise UserError("models: list at least one")
