"""Where a results file came from: the command line, the commit, the date and the machine's load.

A number in a README is only as good as the file it is quoted from, and a file is only evidence if
it says which command, on which code, on which day and on how busy a machine wrote it (two CPU
cores shared with other jobs make a timing several times slower). Every writer of `docs/results/`
puts `provenance()` into its output: a `"provenance"` key in JSON, a `# provenance: ...` first line
in text and markdown (`provenance_line`), a `<file>.provenance.json` sidecar beside a CSV
(`write_sidecar`), so the CSV stays a plain table for every reader.

`refuse_other_experiment` keeps one file per experiment: a run with different settings (another
antlr4, another model set) must name its own `--out`, instead of silently replacing the numbers a
README quotes. Stdlib only: this is the bottom layer.
"""

from __future__ import annotations

import datetime
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any, Mapping, Sequence

from core.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
SIDECAR_SUFFIX = ".provenance.json"


def git_commit(root: str | Path = ROOT) -> str:
    """`git rev-parse --short HEAD`, plus `-dirty` when tracked files differ from it ("unknown" outside git).

    Untracked files do not count: a results file being written is itself untracked the first time.
    """
    def git(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True)

    head = git("rev-parse", "--short", "HEAD")
    if head.returncode != 0:
        return "unknown"
    dirty = git("status", "--porcelain", "--untracked-files=no").stdout.strip()
    return head.stdout.strip() + ("-dirty" if dirty else "")


def provenance(argv: Sequence[str] | None = None, root: str | Path = ROOT) -> dict[str, Any]:
    """The record every results file carries: command, commit, UTC date and time, cores and load.

    `argv` defaults to this process's command line (`sys.argv`, with the interpreter named as run,
    so the record can be pasted back into a shell from the repository root).
    """
    argv = list(sys.argv) if argv is None else list(argv)
    if argv and argv[0].endswith(".py"):
        argv = [_interpreter(), _relative(argv[0], root), *argv[1:]]
    elif argv:
        argv = [Path(argv[0]).name if Path(argv[0]).parent == Path(sys.executable).parent else argv[0], *argv[1:]]
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    return {
        "command": shlex.join(argv),
        "commit": git_commit(root),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "host": {"cores": os.cpu_count(), "load_1m": round(load[0], 2), "machine": os.uname().machine},
    }


def provenance_line(record: Mapping[str, Any] | None = None) -> str:
    """The record as one `# provenance: ...` line, the first line of a text or markdown result."""
    record = provenance() if record is None else record
    host = record["host"]
    return (f"# provenance: {record['command']} | commit {record['commit']} | {record['date']} | "
            f"{host['machine']}, {host['cores']} cores, load {host['load_1m']}")


def sidecar_path(path: str | Path) -> Path:
    """Where a CSV's provenance goes: `<file>.provenance.json` beside it."""
    path = Path(path)
    return path.with_name(path.name + SIDECAR_SUFFIX)


def write_sidecar(path: str | Path, record: Mapping[str, Any] | None = None, **extra: Any) -> Path:
    """Write `sidecar_path(path)`: the provenance record plus `extra` (timings, settings)."""
    record = dict(provenance() if record is None else record, **extra)
    sidecar = sidecar_path(path)
    sidecar.parent.mkdir(parents=True, exist_ok=True)
    sidecar.write_text(json.dumps(record, indent=1, ensure_ascii=False) + "\n")
    return sidecar


def refuse_other_experiment(out: str | Path, settings: Mapping[str, Any], key: str = "settings") -> None:
    """Stop before `out` is replaced by a run of a different experiment.

    `settings` are what makes the experiment itself (not the code measured): the file at `out`, if it
    is JSON and records `key`, must record the same. A re-measurement of the same experiment on newer
    code passes; another experiment is told to write its own file.
    """
    out = Path(out)
    if not out.exists():
        return
    try:
        recorded = json.loads(out.read_text()).get(key)
    except (ValueError, AttributeError):
        return
    if recorded is not None and recorded != dict(settings):
        raise UserError(f"{out} holds another experiment ({key} {recorded}, this run {dict(settings)}): "
                        "write this one to its own --out, or delete the file to replace it")


def _interpreter() -> str:
    """The interpreter as a path relative to the repository when it lives there (`.venv/bin/python`)."""
    return _relative(sys.executable, ROOT) if sys.executable else "python"


def _relative(path: str, root: str | Path) -> str:
    try:
        return str(Path(path).absolute().relative_to(Path(root).absolute()))
    except ValueError:
        return path
