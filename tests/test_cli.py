"""The command line's one error rule: a `UserError` is one line and status 2; `MOELAB_DEBUG=1`
prints the whole chain, including the library exception the message replaced (`from None`)."""

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _moelab(*args, debug: bool):
    env = {k: v for k, v in os.environ.items() if k != "MOELAB_DEBUG"}
    if debug:
        env["MOELAB_DEBUG"] = "1"
    return subprocess.run([sys.executable, "-m", "moelab.cli", *args], capture_output=True, text=True, cwd=REPO,
                          env=env)


def test_a_user_error_is_one_line_unless_debugging(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: [unclosed\n")
    plain = _moelab("config", "show", str(bad), debug=False)
    assert plain.returncode == 2 and plain.stderr.count("\n") == 1 and "not valid YAML" in plain.stderr
    debug = _moelab("config", "show", str(bad), debug=True)
    assert debug.returncode == 2 and "Traceback" in debug.stderr
    assert "yaml" in debug.stderr and "ParserError" in debug.stderr  # the hidden cause is shown
    assert "core.errors.UserError" in debug.stderr and "not valid YAML" in debug.stderr


def test_importing_rewards_loads_nothing_heavy():
    code = ("import sys, rewards, tasks.datasets; "
            "heavy = [m for m in ('rewards.scorer', 'rewards.pool', 'math_verify', 'torch') if m in sys.modules]; "
            "print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stderr
