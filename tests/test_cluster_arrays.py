"""The array scripts (scripts/slurm_array.sh, scripts/pbs_array.sh) on a fake cluster, as tests/test_cluster_scripts.py
does for GRPO: a stub `sbatch` / `qsub` that runs the script once per array index with the variables SLURM / PBS set
in an array task (and `qstat -f` answering the array's range), and a stub `moelab` that records its arguments.

What must hold (issue 23, item 5): each index runs exactly `moelab SUBCOMMAND RECIPE [key=value ...] --shard I/N`,
overrides as typed; a task's failure is the job's exit status; outside an array, with another subcommand, with a
--shard of one's own or with indices that would leave models to no task, the script stops with one line and
status 2 before moelab runs; logs go to logs/.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

LAB = Path(__file__).resolve().parents[1]
SLURM, PBS = LAB / "scripts/slurm_array.sh", LAB / "scripts/pbs_array.sh"

# sbatch [--array=SPEC] [other options] SCRIPT ARGS: runs SCRIPT once per index, one after the other, with the
# array variables of that index (COUNT left out under STUB_NO_COUNT, as on old SLURM); prints each task's status.
STUB_SBATCH = r'''
import json, os, subprocess, sys
args = sys.argv[1:]
opts = {}
while args and args[0].startswith("-"):
    key, _, value = args.pop(0).partition("=")
    opts[key] = value
script, rest = args[0], args[1:]
indices = []
for part in opts["--array"].split("%")[0].split(","):
    span, _, step = part.partition(":")
    low, _, high = span.partition("-")
    indices += list(range(int(low), int(high or low) + 1, int(step or 1)))
env = {**os.environ, "SLURM_SUBMIT_DIR": os.getcwd(), "SLURM_ARRAY_JOB_ID": "900",
       "SLURM_ARRAY_TASK_MIN": str(min(indices)), "SLURM_ARRAY_TASK_MAX": str(max(indices))}
if not os.environ.get("STUB_NO_COUNT"):
    env["SLURM_ARRAY_TASK_COUNT"] = str(len(indices))
status = {}
for i in indices:
    done = subprocess.run(["bash", script, *rest], env={**env, "SLURM_ARRAY_TASK_ID": str(i)},
                          capture_output=True, text=True)
    status[i] = done.returncode
    sys.stderr.write(done.stdout + done.stderr)
print(json.dumps(status))
'''

# qsub [-J SPEC | -t SPEC] [-v A=1,B=2] [-F "ARGS"] SCRIPT: the same for PBS Pro (PBS_ARRAY_INDEX) or Torque (-t:
# PBS_ARRAYID); `qstat -f` of the array answers with the range it was submitted with.
STUB_QSUB = r'''
import json, os, shlex, subprocess, sys
args, opts = sys.argv[1:], {}
while args and args[0].startswith("-"):
    flag = args.pop(0)
    opts[flag] = args.pop(0)
script = args[0]
spec = opts.get("-J") or opts["-t"]
low, _, high = spec.partition("-")
env = {**os.environ, "PBS_O_WORKDIR": os.getcwd(), "PBS_ARRAY_ID": "77[].server", "STUB_ARRAY_RANGE": spec}
for item in filter(None, opts.get("-v", "").split(",")):
    name, _, value = item.partition("=")
    env[name] = value
variable = "PBS_ARRAY_INDEX" if "-J" in opts else "PBS_ARRAYID"
status = {}
for i in range(int(low), int(high) + 1):
    done = subprocess.run(["bash", script, *shlex.split(opts.get("-F", ""))], env={**env, variable: str(i)},
                          capture_output=True, text=True)
    status[i] = done.returncode
    sys.stderr.write(done.stdout + done.stderr)
print(json.dumps(status))
'''

STUB_QSTAT = r'''
import os, sys
if os.environ.get("STUB_QSTAT") == "down" or sys.argv[1:] != ["-f", "77[].server"]:
    sys.exit(1)
print("Job Id: 77[].server\n    Job_Name = moelab-array\n    array = True")
print(f"    array_indices_submitted = {os.environ['STUB_ARRAY_RANGE']}")
'''

STUB_MOELAB = r'''
import json, os, sys
shard = sys.argv[sys.argv.index("--shard") + 1] if "--shard" in sys.argv else None
with open(os.environ["STUB_LOG"], "a") as f:
    f.write(json.dumps({"argv": sys.argv[1:], "cwd": os.getcwd()}) + "\n")
sys.exit(3 if shard and shard.split("/")[0] == os.environ.get("STUB_FAIL_SHARD") else 0)
'''


@pytest.fixture
def cluster(tmp_path: Path) -> dict:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in {"sbatch": STUB_SBATCH, "qsub": STUB_QSUB, "qstat": STUB_QSTAT, "moelab": STUB_MOELAB}.items():
        path = bin_dir / name
        path.write_text(f"#!{sys.executable}\n{body}")
        path.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "PBS_"))}
    env.update(PATH=f"{bin_dir}:{os.environ['PATH']}", MOELAB=str(bin_dir / "moelab"),
               STUB_LOG=str(tmp_path / "moelab.jsonl"))
    return {"dir": tmp_path, "env": env}


def submit(cluster: dict, command: list[str], timeout: int = 60, **env: str) -> tuple[dict[int, int], str]:
    """Run a stub submission from the repository root: ({index: exit status}, every task's output)."""
    done = subprocess.run(command, env={**cluster["env"], **env}, cwd=LAB, capture_output=True, text=True,
                          timeout=timeout, check=False)
    assert done.returncode == 0, done.stderr
    return {int(k): v for k, v in json.loads(done.stdout).items()}, done.stderr


def calls(cluster: dict) -> list[list[str]]:
    path = cluster["dir"] / "moelab.jsonl"
    return [json.loads(line)["argv"] for line in path.read_text().splitlines()] if path.is_file() else []


def run_directly(cluster: dict, script: Path, args: list[str], **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(script), *args], env={**cluster["env"], **env}, cwd=LAB, capture_output=True,
                          text=True, timeout=60, check=False)


# ------------------------------------------------------------------------------------------------------- SLURM


def test_slurm_array_runs_the_command_with_each_index(cluster):
    status, out = submit(cluster, ["sbatch", "--array=0-2", str(SLURM), "eval", "configs/eval/study-math.yaml",
                                   "limit=5", "output_dir=outputs/eval/with space"])
    assert status == {0: 0, 1: 0, 2: 0}
    assert calls(cluster) == [["eval", "configs/eval/study-math.yaml", "limit=5", "output_dir=outputs/eval/with space",
                               "--shard", f"{i}/3"] for i in range(3)]
    assert "[slurm] task 1/3 exited with status 0" in out


def test_slurm_array_size_from_min_and_max_when_count_is_absent(cluster):
    status, _ = submit(cluster, ["sbatch", "--array=0-3", str(SLURM), "taskloss", "configs/taskloss/toy.yaml"],
                       STUB_NO_COUNT="1")
    assert status == {i: 0 for i in range(4)}
    assert [c[-1] for c in calls(cluster)] == ["0/4", "1/4", "2/4", "3/4"]


def test_slurm_failed_task_fails_its_job_and_only_its_job(cluster):
    status, out = submit(cluster, ["sbatch", "--array=0-2", str(SLURM), "sweep", "configs/sweep/toy.yaml"],
                         STUB_FAIL_SHARD="1")
    assert status == {0: 0, 1: 3, 2: 0}  # afterok then never collects a half-done array
    assert "task 1/3 exited with status 3" in out


def test_slurm_rerun_of_some_tasks_names_the_array_size(cluster):
    status, out = submit(cluster, ["sbatch", "--array=1-3", str(SLURM), "eval", "configs/eval/toy.yaml"])
    assert status == {1: 2, 2: 2, 3: 2} and not calls(cluster)  # model 0 would belong to no task
    assert "must be 0..N-1" in out and "SHARDS=N" in out
    status, _ = submit(cluster, ["sbatch", "--array=1,3", str(SLURM), "eval", "configs/eval/toy.yaml"], SHARDS="4")
    assert status == {1: 0, 3: 0} and [c[-1] for c in calls(cluster)] == ["1/4", "3/4"]


@pytest.mark.parametrize("args, env, message", [
    (["eval", "configs/eval/toy.yaml"], {}, "not a SLURM array task (SLURM_ARRAY_TASK_ID is unset)"),
    (["grpo", "configs/grpo/toy.yaml"], {"SLURM_ARRAY_TASK_ID": "0", "SLURM_ARRAY_TASK_MAX": "1"},
     "an array runs `moelab eval|taskloss|sweep"),
    (["eval"], {"SLURM_ARRAY_TASK_ID": "0", "SLURM_ARRAY_TASK_MAX": "1"}, "needs a recipe"),
    (["eval", "configs/eval/toy.yaml", "--shard", "0/2"], {"SLURM_ARRAY_TASK_ID": "0", "SLURM_ARRAY_TASK_MAX": "1"},
     "do not pass --shard"),
    (["eval", "configs/eval/toy.yaml"], {"SLURM_ARRAY_TASK_ID": "0"}, "SLURM_ARRAY_TASK_MAX is unset"),
], ids=["not-an-array", "subcommand", "no-recipe", "own-shard", "no-size"])
def test_slurm_refuses_with_one_line_and_status_2(cluster, args, env, message):
    done = run_directly(cluster, SLURM, args, **env)
    assert done.returncode == 2 and message in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and not calls(cluster)


# --------------------------------------------------------------------------------------------------------- PBS


def test_pbs_array_takes_the_command_from_variables_and_an_overrides_file(cluster):
    overrides = cluster["dir"] / "overrides.txt"
    overrides.write_text("# mine\nlimit=5\n\noutput_dir=outputs/taskloss/with space\n")
    variables = f"SUBCOMMAND=taskloss,RECIPE=configs/taskloss/toy.yaml,OVERRIDES_FILE={overrides}"
    status, out = submit(cluster, ["qsub", "-J", "0-2", "-v", variables, str(PBS)])
    assert status == {0: 0, 1: 0, 2: 0}  # N = 3 from qstat's array_indices_submitted
    assert calls(cluster) == [["taskloss", "configs/taskloss/toy.yaml", "limit=5",
                               "output_dir=outputs/taskloss/with space", "--shard", f"{i}/3"] for i in range(3)]
    assert "[pbs] task 2/3 exited with status 0" in out


def test_pbs_torque_positional_arguments_and_shards(cluster):
    status, _ = submit(cluster, ["qsub", "-t", "0-1", "-F", "sweep configs/sweep/toy.yaml data.limit=4", "-v",
                                 "SHARDS=2,STUB_QSTAT=down", str(PBS)])
    assert status == {0: 0, 1: 0}
    assert calls(cluster) == [["sweep", "configs/sweep/toy.yaml", "data.limit=4", "--shard", f"{i}/2"]
                              for i in range(2)]


def test_pbs_failed_subjob_fails_with_its_status(cluster):
    variables = "SUBCOMMAND=eval,RECIPE=configs/eval/toy.yaml,OVERRIDES=limit=2"
    status, _ = submit(cluster, ["qsub", "-J", "0-1", "-v", variables, str(PBS)], STUB_FAIL_SHARD="0")
    assert status == {0: 3, 1: 0}
    assert calls(cluster)[1] == ["eval", "configs/eval/toy.yaml", "limit=2", "--shard", "1/2"]


@pytest.mark.parametrize("env, message", [
    ({"SUBCOMMAND": "eval", "RECIPE": "configs/eval/toy.yaml"}, "not a PBS array subjob (PBS_ARRAY_INDEX is unset)"),
    ({"SUBCOMMAND": "demo", "RECIPE": "configs/demo/toy.yaml", "PBS_ARRAY_INDEX": "0", "SHARDS": "2"},
     "an array runs `moelab eval|taskloss|sweep"),
    ({"SUBCOMMAND": "eval", "RECIPE": "configs/eval/toy.yaml", "PBS_ARRAY_INDEX": "0", "STUB_QSTAT": "down"},
     "cannot tell the array's size N"),
    ({"SUBCOMMAND": "eval", "RECIPE": "configs/eval/toy.yaml", "PBS_ARRAY_INDEX": "2", "SHARDS": "2"},
     "indices must run 0..N-1"),
], ids=["not-an-array", "subcommand", "no-size", "index-too-big"])
def test_pbs_refuses_with_one_line_and_status_2(cluster, env, message):
    done = run_directly(cluster, PBS, [], **env)
    assert done.returncode == 2 and message in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and not calls(cluster)


def test_logs_go_to_logs_and_the_headers_show_the_collect_step():
    slurm, pbs = SLURM.read_text(), PBS.read_text()
    assert "#SBATCH --output=logs/" in slurm and "#PBS -o logs/" in pbs and (LAB / "logs").is_dir()
    assert "--dependency=afterok:$JOB" in slurm and "depend=afterok:$JOB" in pbs
    for text in (slurm, pbs):
        assert "set -euo pipefail" in text and "source scripts/cluster_lib.sh" in text


@pytest.mark.slow  # three moelab processes on the toy members
def test_real_moelab_array_then_collect_writes_the_unsharded_table(cluster, tmp_path):
    import csv

    out = tmp_path / "taskloss"
    args = ["taskloss", "configs/taskloss/toy.yaml", "models=[toy-d64-E4-k2,toy-d64-E8-k2]", "limit=4",
            "backend.type=hf", f"output_dir={out}"]
    moelab = str(Path(sys.executable).parent / "moelab")
    status, output = submit(cluster, ["sbatch", "--array=0-1", str(SLURM), *args], timeout=600, MOELAB=moelab)
    assert status == {0: 0, 1: 0}, output
    assert "shard 1/2: toy-d64-E8-k2 (1 of 2 models)" in output and not (out / "taskloss.csv").exists()
    collect = subprocess.run([moelab, *args], env=cluster["env"], cwd=LAB, capture_output=True, text=True, timeout=300,
                             check=False)
    assert collect.returncode == 0, collect.stderr
    assert "scoring" not in collect.stdout  # every model was done: nothing scored again
    with (out / "taskloss.csv").open(newline="") as f:
        assert [r["model"] for r in csv.DictReader(f)] == ["toy-d64-E4-k2", "toy-d64-E8-k2"]
