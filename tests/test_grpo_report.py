"""`rl.report`: before -> after greedy accuracy of a GRPO run with a paired bootstrap CI, on hand-made
`eval_samples.jsonl` files whose answer is known."""

from __future__ import annotations

import json
import math

import pytest

from core.errors import UserError
from rl.report import eval_changes, main, paired_change, read_verdicts
from rl.train import eval_change_summary


def write_eval_samples(run_dir, num_problems=200, correct_before=100, fixed=30, broken=5, after_step=40):
    """Step 0: the first `correct_before` problems right. Step `after_step`: `fixed` of the wrong ones
    become right and `broken` of the right ones become wrong."""
    run_dir.mkdir(parents=True, exist_ok=True)
    before = [i < correct_before for i in range(num_problems)]
    after = list(before)
    for i in range(correct_before, correct_before + fixed):
        after[i] = True
    for i in range(broken):
        after[i] = False
    with (run_dir / "eval_samples.jsonl").open("w") as f:
        for step, verdicts in ((0, before), (after_step, after)):
            for i, ok in enumerate(verdicts):
                f.write(json.dumps({"step": step, "dataset": "toy", "id": f"toy-test-0-{i}", "correct": ok,
                                    "completion": "... #### 1"}) + "\n")
    return run_dir


def test_a_known_rise_is_measured_and_its_paired_ci_excludes_zero(tmp_path):
    run = write_eval_samples(tmp_path / "run")
    change = eval_changes(run)["toy"]
    assert (change["before_step"], change["after_step"], change["num_problems"]) == (0, 40, 200)
    assert (change["before"], change["after"], change["fixed"], change["broken"]) == (0.5, 0.625, 30, 5)
    assert change["change"] == pytest.approx(0.125)
    # per-problem differences: +1 x30, -1 x5, 0 x165 -> normal-approximation 95% CI 0.125 +- 1.96 * 0.0282
    half_width = 1.96 * math.sqrt((35 / 200 - 0.125**2) / 200)
    assert change["ci_low"] == pytest.approx(0.125 - half_width, abs=0.012)
    assert change["ci_high"] == pytest.approx(0.125 + half_width, abs=0.012)
    assert change["significant"] and change["ci_low"] > 0
    assert eval_change_summary(run)["toy"]["change"] == pytest.approx(0.125)  # what summary.json records


def test_no_net_change_has_a_ci_around_zero_and_pairing_keeps_it_narrow(tmp_path):
    change = eval_changes(write_eval_samples(tmp_path / "run", fixed=10, broken=10))["toy"]
    assert change["change"] == 0.0 and not change["significant"]
    assert change["ci_low"] < 0 < change["ci_high"]
    # 20 discordant problems of 200: the paired interval is about +-0.044; two unpaired binomial
    # intervals at 50% accuracy would give +-0.098 for the difference
    assert change["ci_high"] - change["ci_low"] < 0.1


def test_drop_steps_and_pairing_on_shared_problems(tmp_path):
    run = write_eval_samples(tmp_path / "run", fixed=0, broken=40)
    with (run / "eval_samples.jsonl").open("a") as f:  # a problem only the last step saw is not paired
        f.write(json.dumps({"step": 40, "dataset": "toy", "id": "extra", "correct": True}) + "\n")
    change = eval_changes(run, before_step=0, after_step=40)["toy"]
    assert change["num_problems"] == 200 and change["change"] == pytest.approx(-0.2)
    assert change["significant"] and change["ci_high"] < 0
    with pytest.raises(UserError, match="no eval at step 7"):
        eval_changes(run, after_step=7)
    assert paired_change({"a": True}, {"a": False}, resamples=200)["change"] == -1.0
    with pytest.raises(UserError, match="nothing to pair"):
        paired_change({"a": True}, {"b": True})


def test_later_lines_win_and_bad_files_are_named(tmp_path):
    path = tmp_path / "eval_samples.jsonl"
    path.write_text('{"step": 0, "dataset": "toy", "id": "p", "correct": false}\n'
                    '{"step": 0, "dataset": "toy", "id": "p", "correct": true}\n')
    assert read_verdicts(path) == {"toy": {0: {"p": True}}}
    assert eval_change_summary(tmp_path) is None  # one eval step only: no before/after to report
    path.write_text('{"step": 0}\n')
    with pytest.raises(UserError, match="eval_samples.jsonl:1"):
        read_verdicts(path)
    assert eval_change_summary(tmp_path) is None  # the end of a run reports it instead of failing
    assert eval_change_summary(tmp_path / "missing") is None


def test_cli_prints_one_line_per_dataset(tmp_path, capsys):
    run = write_eval_samples(tmp_path / "run")
    assert main([str(run), "--resamples", "500"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith("toy: greedy accuracy 0.500 (step 0) -> 0.625 (step 40), change +0.125")
    assert line.endswith("significant rise")
    assert main([str(tmp_path / "nothing")]) == 2
