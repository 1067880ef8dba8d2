"""Results files say which command, commit and machine wrote them, and one experiment never replaces another's."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from core.errors import UserError
from core.provenance import (
    git_commit,
    provenance,
    provenance_line,
    refuse_other_experiment,
    sidecar_path,
    write_sidecar,
)


def test_the_record_names_command_commit_date_and_load():
    record = provenance(["bench/peer_agreement.py", "--out", "x.json"])
    assert record["command"].endswith("bench/peer_agreement.py --out x.json")  # after the interpreter that ran it
    assert record["commit"] == git_commit() and record["date"].endswith("Z")
    assert record["host"]["cores"] >= 1 and record["host"]["load_1m"] >= 0
    assert provenance_line(record).startswith("# provenance: ") and record["commit"] in provenance_line(record)


def test_a_changed_tracked_file_marks_the_commit_dirty(tmp_path):
    def git(*args):
        subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True)

    assert git_commit(tmp_path) == "unknown"  # outside a repository: said, not raised
    git("init", "-q")
    (tmp_path / "a.txt").write_text("1")
    git("add", "a.txt")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "a")
    (tmp_path / "new-result.json").write_text("{}")  # an untracked results file is not a change of the code
    assert not git_commit(tmp_path).endswith("-dirty")
    (tmp_path / "a.txt").write_text("2")
    assert git_commit(tmp_path).endswith("-dirty")


def test_a_csv_gets_a_sidecar_with_the_jobs_own_timing(tmp_path):
    table = tmp_path / "grid.csv"
    table.write_text("a,b\n1,2\n")
    written = write_sidecar(table, seconds=12, workers=2)
    assert written == sidecar_path(table) == tmp_path / "grid.csv.provenance.json"
    record = json.loads(written.read_text())
    assert record["seconds"] == 12 and record["command"] and table.read_text() == "a,b\n1,2\n"


def test_another_experiment_never_replaces_a_result(tmp_path):
    out = tmp_path / "peer.json"
    refuse_other_experiment(out, {"antlr4": "4.13.2"})  # nothing there yet
    out.write_text(json.dumps({"settings": {"antlr4": "4.13.2"}, "agree": 261}))
    refuse_other_experiment(out, {"antlr4": "4.13.2"})  # the same experiment, re-measured: fine
    with pytest.raises(UserError, match="another experiment.*own --out"):
        refuse_other_experiment(out, {"antlr4": "4.11.0"})
    out.write_text(json.dumps({"agree": 261}))  # written before settings were recorded: replaceable
    refuse_other_experiment(out, {"antlr4": "4.11.0"})


def test_the_peer_agreement_bench_refuses_another_antlr4_over_the_main_file(tmp_path):
    """The experiment that once overwrote the committed file now stops before scoring anything."""
    out = tmp_path / "peer.json"
    out.write_text(json.dumps({"settings": {"lab_root": ".", "antlr4": "4.11.0", "math_verify": "0"}}))
    done = subprocess.run([sys.executable, "bench/peer_agreement.py", "--out", str(out)], capture_output=True,
                          text=True, cwd=Path(__file__).resolve().parents[1], timeout=120)
    assert done.returncode == 2 and "holds another experiment" in done.stderr
