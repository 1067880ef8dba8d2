"""The main job end to end on a small slice of the toy family, and the README's commands."""

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from core.config import load_config
from inference.ttc.aggregate import read_metrics
from moelab.demo import StageClock, run_demo
from moelab.demo_report import metric_value
from moelab.recipes import load_recipe

REPO = Path(__file__).resolve().parents[1]
MEMBERS = ["toy-d64-E4-k2", "toy-d64-E8-k4"]


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory, monkeypatch_module):
    out = tmp_path_factory.mktemp("demo")
    monkeypatch_module.setenv("MOELAB_REGISTRY", str(out / "registry.jsonl"))
    cfg = load_recipe(REPO / "configs/demo/toy.yaml", [
        f"output_dir={out}", f"quick.models=[{','.join(MEMBERS)}]",
        "quick.sweep_overrides=[data.limit=16,sampling.num_samples=4,aggregate.bootstrap=200]",
        "quick.grpo_overrides=[max_steps=2,eval.limit=16,checkpoints.save_steps=100]", "sft_control.steps=2",
        "sft_control.batch_size=16"])
    report = run_demo(cfg, quick=True)
    return report.parent


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


@pytest.mark.slow
@pytest.mark.vllm_engine  # the demo sweeps with configs/sweep/toy.yaml (vLLM)
def test_demo_writes_every_artifact(demo_run):
    before, after = demo_run / "before" / "metrics.csv", demo_run / "after" / "metrics.csv"
    assert (demo_run / "report.md").stat().st_size > 500
    for path in [demo_run / "plots" / "cross_model.png", *[demo_run / "plots" / f"{m}.png" for m in MEMBERS]]:
        assert path.stat().st_size > 5_000, path
    rows = read_metrics(before)
    for member in MEMBERS:
        for strategy in ["pass", "majority", "best_of_n", "weighted_majority"]:
            for k in [1, 2, 4]:
                assert metric_value(rows, member, strategy, k) is not None, (member, strategy, k)
    assert len(read_metrics(after)) == len(rows)
    timing = json.loads((demo_run / "timing.json").read_text())  # the demo's own stage times, with its commit
    assert timing["stages"][0]["stage"].startswith("1/5") and timing["stages"][-1]["stage"].startswith("5/5")
    assert timing["seconds"] >= timing["stages"][-1]["elapsed_s"] and timing["provenance"]["commit"]


@pytest.mark.slow
@pytest.mark.vllm_engine  # the demo sweeps with configs/sweep/toy.yaml (vLLM)
def test_report_numbers_match_the_csvs(demo_run):
    report = (demo_run / "report.md").read_text()
    rows = read_metrics(demo_run / "before" / "metrics.csv")
    for member in MEMBERS:
        line = next(l for l in report.splitlines() if l.startswith(f"| {member} |"))
        cells = [c.strip() for c in line.strip("|").split("|")]
        pass1_before = metric_value(rows, member, "pass", 1)
        assert cells[5] == f"{100 * float(pass1_before['accuracy']):.1f} [{100 * float(pass1_before['ci_low']):.1f}, " \
                           f"{100 * float(pass1_before['ci_high']):.1f}]"
        majority = metric_value(rows, member, "majority", 4)
        assert cells[7].startswith(f"{100 * float(majority['accuracy']):.1f} ")


@pytest.mark.slow
@pytest.mark.vllm_engine  # the demo sweeps with configs/sweep/toy.yaml (vLLM)
def test_the_sft_control_stands_beside_grpo_on_the_same_eval(demo_run):
    """Each member's SFT-on-gold control scored the GRPO run's eval problems, and the report quotes both runs'
    recorded paired changes."""
    import json

    from moelab.demo_report import _fmt_eval_change, eval_change
    from rl.report import read_verdicts

    report = (demo_run / "report.md").read_text()
    assert "## GRPO beside the SFT-on-gold control" in report
    for member in MEMBERS:
        grpo_dir, sft_dir = demo_run / "grpo" / member, demo_run / "sft" / member
        sft_summary = json.loads((sft_dir / "summary.json").read_text())
        assert sft_summary["settings"]["steps"] == 2
        assert sft_summary["before_eval_from"] == str(grpo_dir)  # step 0 copied from the GRPO run, not decoded again
        grpo_ids = {i for step in read_verdicts(grpo_dir / "eval_samples.jsonl")["toy"].values() for i in step}
        sft_steps = read_verdicts(sft_dir / "eval_samples.jsonl")["toy"]
        assert sorted(sft_steps) == [0, 2] and all(set(v) == grpo_ids for v in sft_steps.values())
        grpo, sft = eval_change(grpo_dir), eval_change(sft_dir)
        assert sft["before"] == grpo["before"]  # the same member, problems and greedy decoding before training
        assert f"| {member} | {_fmt_eval_change(grpo)} | {_fmt_eval_change(sft)} |" in report


def _readme_commands():
    """The `moelab` commands of the README and of the pages it links (docs/*.md)."""
    text = "\n".join(page.read_text() for page in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))])
    blocks = re.findall(r"```bash\n(.*?)```", text, flags=re.S)
    commands = []
    for block in blocks:
        for line in block.splitlines():
            line = line.split("  #")[0].strip()
            if line.startswith(".venv/bin/moelab") or line.startswith("moelab "):
                commands.append(line)
    return commands


def test_the_demo_writes_its_own_stage_times(tmp_path, capsys):
    """The README's demo timing comes from this file, not from a terminal copied by hand."""
    stage = StageClock()
    stage("1/5 sweep before GRPO: 2 members")
    stage("5/5 plots and report")
    timing = json.loads(stage.write(tmp_path / "timing.json", quick=True).read_text())
    assert [s["stage"] for s in timing["stages"]] == ["1/5 sweep before GRPO: 2 members", "5/5 plots and report"]
    assert timing["quick"] and timing["seconds"] >= timing["stages"][-1]["elapsed_s"] >= 0
    assert timing["provenance"]["command"] and timing["provenance"]["commit"]
    assert "=== 5/5 plots and report  (elapsed 0 s)" in capsys.readouterr().out


@pytest.mark.slow
def test_readme_moelab_commands_parse():
    """Every `moelab` command in the README parses; read-only ones run, long jobs get `--help`."""
    commands = _readme_commands()
    assert len(commands) >= 8
    for command in commands:
        argv = shlex.split(command)[1:]
        read_only = argv[0] in ("checkpoints", "config") and "materialize" not in argv
        args = argv if read_only else [argv[0], "--help"]
        done = subprocess.run([sys.executable, "-m", "moelab.cli", *args], capture_output=True, text=True, cwd=REPO)
        assert done.returncode == 0, (command, done.stderr[-2000:])
        assert done.stdout.strip(), command


def test_a_grpo_run_is_reused_only_for_the_same_base_weights_and_recipe(tmp_path):
    import json
    import shutil

    from moelab.members import finished_grpo_run
    from rl.schema import GRPORecipe
    from rl.train import run_identity

    member = tmp_path / "member"
    shutil.copytree(REPO / "checkpoints_index/toy/models/toy-d64-E4-k2", member)
    out = tmp_path / "grpo"

    def recipe(*extra):
        return load_config(REPO / "configs/grpo/toy.yaml", [f"model.name={member}", f"output_dir={out}", *extra],
                           schema=GRPORecipe)

    out.mkdir()
    (out / "summary.json").write_text(json.dumps({"step": 40, "identity": run_identity(recipe())}))
    assert finished_grpo_run(recipe())["step"] == 40
    assert finished_grpo_run(recipe("resume=true"))["step"] == 40       # resuming is not another recipe

    assert finished_grpo_run(recipe("max_steps=41")) is None             # another recipe: moved aside, kept
    assert not out.exists() and json.loads((tmp_path / "grpo.stale-1" / "summary.json").read_text())["step"] == 40

    out.mkdir()
    (out / "summary.json").write_text(json.dumps({"step": 40, "identity": run_identity(recipe())}))
    weights = member / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1                                                        # the base member retrained in place
    weights.write_bytes(bytes(data))
    assert finished_grpo_run(recipe()) is None
    assert (tmp_path / "grpo.stale-2" / "summary.json").is_file() and not out.exists()
