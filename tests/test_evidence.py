"""Every measured number in the READMEs equals the file it cites, so a re-measurement fails until the text follows.

Why: numbers drifted. A results file was overwritten by another experiment while two READMEs kept
quoting the old one, and figures appeared with no file at all. The rule (docs/evidence.md): a
measured number is a markdown link to the file that holds it, the fragment saying where in it,

    [261/269](docs/results/math-verify-peer-agreement.json#/agree,/cases)

and the numbers of the link text, in order, equal the values the fragment selects, at the
precision the text prints them. The link renders as the number, clickable to its source, and moves
with its sentence when a README is restructured. A fragment is selectors separated by commas, each
yielding one or more numbers:

- JSON, JSON lines, CSV: `/pointer[?key=value&...][*scale]`. The pointer is RFC 6901 inside a
  record (`/median_ms/plain~1bwrap`; a CSV row's `/column`); a segment may list several keys
  (`/eval/{change,ci_low,ci_high}`). A JSON file is one record, JSON lines one per line, a CSV one
  per row. The filter keeps records whose `key` prints as `value`; every record kept yields its
  value(s), in file order. `*100` scales (a fraction quoted in %).
- Any text file: `re:REGEX`, the groups of its first match (or the whole match). It takes the rest
  of the fragment (a regex may hold commas); `<...>` around the link target allows spaces.
- `cell:ROW;HEADER`: every number in that cell of the first markdown table having both.
- `min:`, `max:`, `median:`, `mean:`, `sum:`, `count:` or `range:` (min and max) before a
  selector aggregates what it yields (for `re:`, the first group of every match; `count:` counts
  records, or the items of a list it points to).

Also checked: every `docs/results/` path a README names exists, and no README sentence states a
measured-looking figure (a ratio, a percentage, a timing, a sentence saying "measured") without a
link to its file; a figure that is a setting, not a result, says so with `<!-- not measured: why -->`.
Pure text processing, well under a second.
"""

from __future__ import annotations

import csv
import io
import json
import re
import statistics
from functools import lru_cache
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "results"
SKIPPED = {"outputs", "logs", "tests", "node_modules"}  # run outputs and test data are not documentation
READMES = sorted(p for p in [*ROOT.glob("*.md"), *ROOT.glob("*/README.md"), *ROOT.glob("*/*/README.md"),
                             *(ROOT / "docs").rglob("*.md")]
                 if not any(part.startswith(".") or part in SKIPPED or part.endswith(".egg-info")
                            for part in p.relative_to(ROOT).parts)
                 and not p.is_relative_to(RESULTS) and not p.is_relative_to(ROOT / "docs" / "gallery"))

# A markdown link; its text may wrap lines and hold one level of brackets (`[+0.6 [-1.9, +3.1]](...)`).
LINK = re.compile(r"\[(?P<text>(?:[^\[\]]|\[[^\[\]]*\])*)\]\((?P<target><[^>\n]+>|(?:[^()\s]|\([^()\s]*\))+)\)")
# A number as prose prints it: optional sign, thousands commas, decimals. Digits glued to a name
# (E4, d512, pass@1, k2) are names, not figures; a hyphen after a digit is a range, not a sign.
NUMBER = re.compile(r"(?<![\w.@])(?P<sign>[-+−](?=\d))?(?P<digits>\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?P<decimals>\.\d+)?")
AGGREGATES = {"min": min, "max": max, "median": statistics.median, "mean": statistics.fmean, "sum": sum,
              "count": len, "range": lambda values: (min(values), max(values))}


def prose(text: str) -> str:
    """The text without fenced code blocks and inline code: examples there are not claims."""
    text = re.sub(r"^```.*?^```", lambda m: "\n" * m.group().count("\n"), text, flags=re.S | re.M)
    return re.sub(r"`[^`\n]*`", lambda m: " " * len(m.group()), text)


def numbers(text: str) -> list[tuple[float, int]]:
    """(value, decimals printed) of every number in a claim's text, in order."""
    found = []
    for m in NUMBER.finditer(text):
        value = float((m["sign"] or "").replace("−", "-") + m["digits"].replace(",", "") + (m["decimals"] or ""))
        found.append((value, len(m["decimals"] or ".") - 1))
    return found


def claims(readme: Path) -> list[dict]:
    """Every link in `readme` whose target is a file under docs/results/ with a fragment."""
    found = []
    text = prose(readme.read_text())
    for m in LINK.finditer(text):
        target = m["target"].strip("<>")
        path, _, fragment = target.partition("#")
        if "://" in path or not fragment:
            continue
        file = (readme.parent / unquote(path)).resolve()
        if file.is_relative_to(RESULTS):
            line = text.count("\n", 0, m.start()) + 1
            found.append({"where": f"{readme.relative_to(ROOT)}:{line}", "text": " ".join(m["text"].split()),
                          "file": file, "fragment": unquote(fragment), "target": target})
    return found


@lru_cache(maxsize=None)
def records(file: Path) -> list:
    """The file as records: a JSON document is one, JSON lines one per line, a CSV one per row."""
    text = file.read_text()
    if file.suffix == ".json":
        return [json.loads(text)]
    if file.suffix == ".jsonl":
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    if file.suffix == ".csv":
        return list(csv.DictReader(io.StringIO(text)))
    raise ValueError(f"{file.name} is not JSON or CSV: select with re: or cell:")


def split_selectors(fragment: str) -> list[str]:
    """Commas separate selectors, except inside braces and in a `re:` selector, which takes the rest."""
    selectors, depth, current = [], 0, ""
    for i, char in enumerate(fragment):
        if not current and re.match(r"(?:\w+:)?re:", fragment[i:]):
            return [*selectors, fragment[i:]]
        depth += {"{": 1, "}": -1}.get(char, 0)
        if char == "," and depth == 0:
            selectors.append(current)
            current = ""
        else:
            current += char
    return [*selectors, current]


def expand_braces(path: str) -> list[str]:
    """`a/{b,c}/d` -> `a/b/d`, `a/c/d`: one name for several keys or files."""
    m = re.search(r"\{([^{}]*)\}", path)
    if not m:
        return [path]
    return [p for option in m.group(1).split(",") for p in expand_braces(path[:m.start()] + option + path[m.end():])]


def pointer(record, path: str) -> list:
    """RFC 6901 pointer into one record (`~1` is `/`); `{a,b}` in a segment selects several keys, in order."""
    values = []
    for plain in expand_braces(path):
        value = record
        for token in plain.split("/")[1:]:
            token = token.replace("~1", "/").replace("~0", "~")
            value = value[int(token)] if isinstance(value, list) else value[token]
        values.append(value)
    return values


def table_cell(file: Path, row: str, header: str) -> str:
    """The cell at (`row`, first column; `header`) of the first markdown table in `file` that has both."""
    table: list[list[str]] = []
    for line in [*file.read_text().splitlines(), ""]:
        if line.startswith("|"):
            table.append([cell.strip() for cell in line.strip().strip("|").split("|")])
            continue
        if table and header in table[0]:
            column = table[0].index(header)
            for cells in table[2:]:
                if cells[0].strip("`") == row:
                    return cells[column]
        table = []
    raise LookupError(f"no table with a row {row!r} and a column {header!r}")


def resolve(file: Path, selector: str) -> list[float]:
    """The numbers `selector` picks from `file` (grammar in the module docstring)."""
    agg = None
    if m := re.match(r"(\w+):(?=re:|cell:|/)", selector):
        agg, selector = AGGREGATES[m.group(1)], selector[m.end():]
    if selector.startswith("re:"):
        matches = list(re.finditer(selector[3:], file.read_text(), re.M))
        if not matches:
            raise LookupError(f"no match for {selector[3:]!r}")
        groups = [[(g or "").replace(",", "") for g in (m.groups() or [m.group()])] for m in matches]
        values = [float(g[0]) for g in groups] if agg else [float(g) for g in groups[0]]
    elif selector.startswith("cell:"):
        row, _, header = selector[5:].partition(";")
        values = [value for value, _ in numbers(table_cell(file, row, header))]
    else:
        rest, _, scale = selector.partition("*")
        path, _, query = rest.partition("?")
        chosen = records(file)
        for condition in filter(None, query.split("&")):
            key, _, value = condition.partition("=")
            chosen = [r for r in chosen if str(r.get(key)) == value]
        if not chosen:
            raise LookupError(f"no record matches {query!r}")
        found = [v for r in chosen for v in pointer(r, path)]
        if agg is len:  # count: the records selected, or the items of the lists selected
            return [sum(len(v) if isinstance(v, list) else 1 for v in found)]
        values = [float(v) * float(scale or 1) for v in found]
    if agg:
        result = agg(values)
        return list(result) if isinstance(result, tuple) else [result]
    return values


def check(claim: dict) -> str | None:
    """None if the claim's numbers equal its file's, else one line: where, the claim, what the file says."""
    head = f"{claim['where']}: [{claim['text']}]({claim['target']})"
    if not claim["file"].is_file():
        return f"{head}: no file {claim['file'].relative_to(ROOT)}"
    try:
        measured = [value for selector in split_selectors(claim["fragment"])
                    for value in resolve(claim["file"], selector)]
    except (LookupError, KeyError, IndexError, ValueError, TypeError, re.error) as error:
        return f"{head}: the fragment does not resolve ({type(error).__name__}: {error})"
    written = numbers(claim["text"])
    if len(written) != len(measured):
        return (f"{head}: the text holds {len(written)} number(s), the file gives {len(measured)}: "
                + ", ".join(f"{v:g}" for v in measured))
    wrong = [f"file {m:.{d}f} where the text says {v:.{d}f}" for (v, d), m in zip(written, measured)
             if not abs(m - v) <= 0.5 * 10 ** -d + 1e-9]
    return f"{head}: " + "; ".join(wrong) if wrong else None


ALL_CLAIMS = [c for readme in READMES for c in claims(readme)]


def test_the_readmes_cite_their_numbers():
    """Guards the guard: a restructuring that drops the links would leave nothing to check."""
    assert len(ALL_CLAIMS) >= 100, [c["where"] for c in ALL_CLAIMS]


def test_every_cited_number_equals_its_file():
    failures = [failure for claim in ALL_CLAIMS if (failure := check(claim))]
    assert not failures, "README numbers that differ from their files:\n" + "\n".join(failures)


def test_every_named_results_file_exists():
    """Paths in prose and code spans alike, from the repository root (`docs/results/x.{json,md}` names both)."""
    missing = []
    for readme in READMES:
        for m in re.finditer(r"docs/results/[\w.{},/-]*[\w}/]", readme.read_text()):
            for path in expand_braces(m.group()):
                if not (ROOT / path).exists():
                    missing.append(f"{readme.relative_to(ROOT)}: {path}")
        for m in LINK.finditer(prose(readme.read_text())):  # links resolve from their page: `results/` in docs/
            path = unquote(m["target"].strip("<>").partition("#")[0])
            if "results/" in path and "://" not in path and not (readme.parent / path).exists():
                missing.append(f"{readme.relative_to(ROOT)}: link {path} (relative to the page)")
    assert not missing, "README paths under docs/results/ that do not exist:\n" + "\n".join(missing)


# Results files written before every writer recorded its provenance (core/provenance.py). The list
# only shrinks: a re-run adds the record, and the test then asks for the name to leave the list.
BEFORE_PROVENANCE = {
    "bench-sandbox.jsonl", "bench-sweep-prefill.txt", "bench-taskloss.txt",
    "demo-toy", "harness-1044db9-requests.json", "harness-82a9936-requests.json", "humaneval-code-checker.json",
    "make-bench-2026-12-07.txt", "math-verify-peer-agreement-before.json", "posttrain-toy-timing.txt",
    "posttrain-toy.csv", "rule-audit-gsm8k.json", "rule-audit-math500.json", "sandbox-isolation.json",
    "toy-family", "toy-grid-1k-timing.txt", "toy-grid-1k.csv", "toy-grid-timing.txt", "toy-grid.csv"}


def has_provenance(file: Path) -> bool:
    """The file carries its record: a JSON `provenance` key (a JSON-lines file: on its last line), a
    `# provenance:` first line, or a `<file>.provenance.json` sidecar."""
    if Path(f"{file}.provenance.json").is_file():
        return True
    text = file.read_text()
    if file.suffix == ".json":
        return "provenance" in json.loads(text)
    if file.suffix == ".jsonl":
        return "provenance" in json.loads(text.strip().splitlines()[-1])
    return text.startswith("# provenance:")


def provenance_of(file: Path) -> Path | None:
    """Where `file`'s record is: itself, the file it was written with (`x.md` and `x-summary.csv` beside
    `x.json` / `x.csv`; not any name it merely extends: `x-before.json` is another experiment), or a run's
    `timing.json` above it."""
    siblings = [s for s in file.parent.iterdir() if s.suffix in (".json", ".jsonl", ".csv", ".txt", ".md")
                and not s.name.endswith(".provenance.json") and file.stem in (s.stem, f"{s.stem}-summary")]
    for candidate in [file, *siblings, *(d / "timing.json" for d in file.parents if d.is_relative_to(RESULTS))]:
        if candidate.is_file() and has_provenance(candidate):
            return candidate
    return None


def test_every_results_file_says_which_command_wrote_it():
    missing, stale = [], []
    for file in sorted(RESULTS.rglob("*")):
        if not file.is_file() or file.suffix == ".png" or file.name.endswith(".provenance.json"):
            continue
        top = file.relative_to(RESULTS).parts[0]
        legacy = top in BEFORE_PROVENANCE or any(file.stem.startswith(Path(name).stem) and file.parent == RESULTS
                                                 for name in BEFORE_PROVENANCE)  # or written beside one
        if provenance_of(file) is None and not legacy:
            missing.append(str(file.relative_to(ROOT)))
    for name in sorted(BEFORE_PROVENANCE):
        path = RESULTS / name
        files = [path] if path.is_file() else [f for f in path.rglob("*") if f.is_file() and f.suffix != ".png"]
        if not files or all(provenance_of(f) for f in files):
            stale.append(name)
    assert not missing, ("results files with no command, commit and date (write them through "
                         "core.provenance):\n" + "\n".join(missing))
    assert not stale, f"re-measured with provenance (or gone): remove from BEFORE_PROVENANCE: {stale}"


# A figure that reads as measured: a ratio (37.6x), a percentage, a time or rate, an approximate
# cost. Confidence levels and targets are not results; nor is anything a `not measured` note explains.
FIGURE = re.compile(r"\d(?:\.\d+)?x\b|\d(?:\.\d+)?\s?%|~\s?\d[\d.]*\s?(?:s|ms|min|[KMG]i?B)\b"
                    r"|\d\s?(?:ms|samples/s|tok/s|s/step)\b|\d\s?s (?:per|wall|CPU)\b")
CONFIDENCE = re.compile(r"\b9[05]\s?%\s?(?:paired |bootstrap |Student-t |t-)?(?:CIs?|interval|confidence)|>= [\d.]+x")
QUANTITY = re.compile(r"(?<![\w.@#-])\d[\d,.]*(?![\w-])")  # a number standing alone (not 2-core, E8, #17)
MEASURING = re.compile(r"\b(?:took|measured|faster|slower)\b", re.I)
SETTING_NOTE = re.compile(r"<!--\s*not measured:.*?-->", re.S)


def sentences(readme: Path):
    """(line, sentence) of the prose outside code blocks: paragraphs, list items and table rows, cut at
    sentence ends; a results table copied verbatim from a results file is that file's, not prose."""
    text = re.sub(r"^```.*?^```", lambda m: "\n" * m.group().count("\n"), readme.read_text(), flags=re.S | re.M)
    text = re.sub(r"<!--(?!\s*not measured).*?-->", "", text, flags=re.S)
    copied = results_table_rows()
    offset = 0
    for block in re.split(r"(\n\s*\n|\n(?=\s*[-*] |\s*\d+\. |\|))", text):
        line = text.count("\n", 0, offset) + 1
        offset += len(block)
        if " ".join(block.split()) in copied:
            continue
        for sentence in re.split(r"(?<=\.)\s+(?=[A-Z(*`])", block):
            yield line, " ".join(sentence.split())


@lru_cache(maxsize=None)
def results_table_rows() -> frozenset[str]:
    """Every markdown table row of a results file, whitespace-normalised."""
    return frozenset(" ".join(line.split()) for path in RESULTS.rglob("*.md")
                     for line in path.read_text().splitlines() if line.startswith("|"))


def cites_results(readme: Path, target: str) -> bool:
    """A link target that is a file under docs/results/, relative to the page that holds it
    (`docs/results/x` from README.md, `results/x` from docs/*.md, `../docs/results/x` from rl/README.md)."""
    path = unquote(target.strip("<>").partition("#")[0])
    return bool(path) and "://" not in path and (readme.parent / path).resolve().is_relative_to(RESULTS)


def names_results(readme: Path, sentence: str) -> bool:
    """The sentence names a results file: a `docs/results/` path, or a link into docs/results/."""
    return "docs/results/" in sentence or any(cites_results(readme, m["target"]) for m in LINK.finditer(sentence))


def test_no_measured_figure_without_its_file():
    """A measured-looking figure is a link to its file; a sentence that says "measured" names one."""
    unsourced = []
    for readme in READMES:
        for line, sentence in sentences(readme):
            if SETTING_NOTE.search(sentence) or re.search(r"not (?:archived|measured|committed)", sentence):
                continue
            bare = LINK.sub(lambda m: "" if cites_results(readme, m["target"]) else m["text"], sentence)
            bare = CONFIDENCE.sub("", re.sub(r"`[^`]*`", "", bare))
            figure = FIGURE.search(bare)
            if not figure and MEASURING.search(bare) and not names_results(readme, sentence) \
                    and QUANTITY.search(MEASURING.split(bare, 1)[1]):
                figure = MEASURING.search(sentence)
            if figure:
                unsourced.append(f"{readme.relative_to(ROOT)}:{line}: {figure.group()!r} in: {sentence[:160]}")
    assert not unsourced, ("figures with no results file (link the number to the file that holds it, or mark a "
                           "setting with <!-- not measured: why -->):\n" + "\n".join(unsourced))


@pytest.mark.parametrize("text, expected", [
    ("261/269", [(261, 0), (269, 0)]), ("-0.9 [-2.6, +0.8]", [(-0.9, 1), (-2.6, 1), (0.8, 1)]),
    ("E4-k2 1,319 of 1,319", [(1319, 0), (1319, 0)]), ("0.029-0.043", [(0.029, 3), (0.043, 3)]),
    ("37.2–38.7x", [(37.2, 1), (38.7, 1)]), ("pass@1 d512 77.0%", [(77.0, 1)])])
def test_numbers_are_read_as_prose_prints_them(text, expected):
    assert numbers(text) == expected


def test_a_changed_file_fails_with_the_claim_and_the_files_value(tmp_path, monkeypatch):
    results = tmp_path / "docs" / "results"
    results.mkdir(parents=True)
    (results / "r.json").write_text(json.dumps({"agree": 252, "cases": 269, "eval": {"change": 0.053, "low": 0.01}}))
    (results / "r.jsonl").write_text('{"date": "a", "x": 1.0}\n{"date": "b", "x": 3.0}\n{"date": "b", "x": 2.0}\n')
    (results / "r.csv").write_text("model,k,value\nE4,2,0.770\nE8,2,0.510\nE8,4,0.705\n")
    (results / "r.md").write_text("| member | pass@1 |\n|---|---|\n| E4 | -0.9 [-2.6, +0.8] |\nrc=0 seconds=1024\n")
    readme = tmp_path / "README.md"
    readme.write_text(
        "agree [261/269](docs/results/r.json#/agree,/cases); [+5.3 [+1.0]](docs/results/r.json#/eval/{change,low}*100)"
        "\nmedian [2.5x](docs/results/r.jsonl#median:/x?date=b), [2.0–3.0](docs/results/r.jsonl#range:/x?date=b)\n"
        "E4 [77.0%, E8 51.0%](docs/results/r.csv#/value?k=2*100) and [1,024 s](<docs/results/r.md#re:seconds=(\\d+)>)"
        "\n"
        "E4 [-0.9 [-2.6, +0.8]](docs/results/r.md#cell:E4;pass@1)\n")
    monkeypatch.setitem(globals(), "ROOT", tmp_path)
    monkeypatch.setitem(globals(), "RESULTS", results)
    found = claims(readme)
    assert [c["text"] for c in found][-1] == "-0.9 [-2.6, +0.8]"
    assert [check(c) is None for c in found] == [False, True, True, True, True, True, True]
    assert check(found[0]) == ("README.md:1: [261/269](docs/results/r.json#/agree,/cases): "
                               "file 252 where the text says 261")
    records.cache_clear()
