"""Record the study's own verdicts on tests/data/study_cases.jsonl, by running the authors' released code.

The lab's `rule=study` and `rule=study_grpo` (rewards/rules.py) are written from the rules' description;
this script runs the authors' code itself, outside the project, so the tests can hold the lab to it:

- rule=study: `GSM8kOutputValidator` / `MathOutputValidator` (defaults) of
  `test-time-compute/llmonk/evaluate/rewarding/gsm8k_math.py`, with lm-eval's Minerva utilities at
  8b41f92 (the commit its requirements.txt pins) and antlr4 4.11 (its requirements.txt);
- rule=study_grpo: `compute_score` of `post-training/verl/utils/reward_score/gsm8k.py` (= math.py) with
  math-verify 0.9.0 (the lab's environment), the gold prepared as verl's `examples/data_preprocess/`
  scripts do (GSM8K: `extract_solution`; MATH: `remove_boxed(last_boxed_only_string(solution))`, the
  Hendrycks functions, taken from the lm-eval copy because the repository's math.py lacks them).

Run once, with the fetched repositories (bare git directories) and a folder holding pydra-config 0.0.1
and jsonlines (`pip install --no-deps --target DIR pydra-config==0.0.1 jsonlines`):

    python tests/data/collect_study_verdicts.py AUTHORS_GIT LM_EVAL_GIT SITE_DIR ANTLR411_DIR

It writes tests/data/study_verdicts.jsonl (the cases plus `verdict` and, for rule=study, `answer`).
The completions are the lab's own test inputs; the authors' GRPO reward `exec`s them unsandboxed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
CASES = HERE / "study_cases.jsonl"
OUT = HERE / "study_verdicts.jsonl"

TTC_DRIVER = """
import json, sys
from llmonk.evaluate.rewarding.gsm8k_math import GSM8kOutputValidator, MathOutputValidator
out = []
for case in map(json.loads, sys.stdin):
    validator = GSM8kOutputValidator() if case["task"] == "gsm8k" else MathOutputValidator(False, False)
    correct, answer, gold = validator.is_correct(case["completion"], case["solution"])
    out.append({"id": case["id"], "verdict": bool(correct), "answer": answer, "gold_answer": gold})
print(json.dumps(out))
"""

GRPO_DRIVER = """
import importlib.util, json, sys
def load(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
reward = load("verl_reward", sys.argv[1])
prep = load("verl_gsm8k_prep", sys.argv[2])
from lm_eval.tasks.minerva_math.utils import last_boxed_only_string, remove_boxed
out = []
for case in map(json.loads, sys.stdin):
    if case["task"] == "gsm8k":
        gold = prep.extract_solution(case["solution"])
    else:
        gold = remove_boxed(last_boxed_only_string(case["solution"]))
    out.append({"id": case["id"], "verdict": reward.compute_score(case["completion"], gold) == 1.0, "gold": gold})
print(json.dumps(out))
"""


def export(git_dir: str, commit: str, path: str, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(subprocess.run(["git", "-C", git_dir, "show", f"{commit}:{path}"], check=True,
                                    capture_output=True).stdout)


def run(driver: str, cases: list[dict], python_path: list[str], args: list[str] = ()) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(python_path)}
    reply = subprocess.run([sys.executable, "-c", driver, *args], input="\n".join(map(json.dumps, cases)),
                           capture_output=True, text=True, env=env, cwd=tempfile.gettempdir())
    if reply.returncode != 0:
        sys.exit(f"the authors' code failed:\n{reply.stderr[-3000:]}")
    return {row["id"]: row for row in json.loads(reply.stdout.strip().splitlines()[-1])}


def main(authors_git: str, lm_eval_git: str, site_dir: str, antlr411_dir: str) -> None:
    cases = [json.loads(line) for line in CASES.read_text().splitlines() if line.strip()]
    site_dir, antlr411_dir = str(Path(site_dir).resolve()), str(Path(antlr411_dir).resolve())
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for path in ("llmonk/__init__.py", "llmonk/utils.py", "llmonk/evaluate/__init__.py",
                     "llmonk/evaluate/rewarding/__init__.py", "llmonk/evaluate/rewarding/gsm8k_math.py"):
            if path.endswith("__init__.py") and path.count("/") == 1:
                (root / "ttc" / path).parent.mkdir(parents=True, exist_ok=True)
                (root / "ttc" / path).touch()  # the repository's llmonk/__init__.py is absent or empty
                continue
            try:
                export(authors_git, "HEAD", "test-time-compute/" + path, root / "ttc" / path)
            except subprocess.CalledProcessError:
                (root / "ttc" / path).parent.mkdir(parents=True, exist_ok=True)
                (root / "ttc" / path).touch()
        lm_eval = root / "lm_eval_8b41f92" / "lm_eval"
        export(lm_eval_git, "8b41f92", "lm_eval/tasks/minerva_math/utils.py", lm_eval / "tasks/minerva_math/utils.py")
        for init in ("__init__.py", "tasks/__init__.py", "tasks/minerva_math/__init__.py"):
            (lm_eval / init).touch()
        # lm_eval.utils at 8b41f92 imports much of the harness; the Minerva utilities use only its logger
        (lm_eval / "utils.py").write_text("import logging\neval_logger = logging.getLogger('lm-eval')\n")
        export(authors_git, "HEAD", "post-training/verl/utils/reward_score/gsm8k.py", root / "verl_reward.py")
        export(authors_git, "HEAD", "post-training/examples/data_preprocess/gsm8k.py", root / "verl_gsm8k_prep.py")
        stub = root / "verl_stub" / "verl" / "utils"  # the preprocessing script imports verl's HDFS helpers
        stub.mkdir(parents=True)
        (stub.parent / "__init__.py").touch()
        (stub / "__init__.py").touch()
        (stub / "hdfs_io.py").write_text("copy = makedirs = None\n")

        ttc = run(TTC_DRIVER, [c for c in cases if c["rule"] == "study"],
                  [antlr411_dir, site_dir, str(root / "lm_eval_8b41f92"), str(root / "ttc")])
        grpo = run(GRPO_DRIVER, [c for c in cases if c["rule"] == "study_grpo"],
                   [site_dir, str(root / "lm_eval_8b41f92"), str(root / "verl_stub")], [str(root / "verl_reward.py"),
                                                              str(root / "verl_gsm8k_prep.py")])
    with OUT.open("w") as out:
        for case in cases:
            found = (ttc if case["rule"] == "study" else grpo)[case["id"]]
            out.write(json.dumps({**case, **{k: v for k, v in found.items() if k != "id"}}) + "\n")
    print(f"wrote {OUT} ({len(cases)} verdicts)")


if __name__ == "__main__":
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    main(*sys.argv[1:])
