"""The study in miniature: train a toy sparsity grid over seeds and data regimes, measure reasoning and
memorization on every member, and summarise over seeds (`moelab toy grid configs/toy/grid.yaml`).

The study's claim is a contrast at fixed active parameters: as experts grow (E up, k fixed), training
loss and memorization (TriviaQA) keep improving while reasoning (GSM8K) saturates or regresses. The
toy grid asks the same question of members that differ only in E (k = 2, E = 2 is dense), trained
from `configs/toy/train.yaml` with its memorization control (`tasks/toy_facts.py`) mixed into every
batch, at several numbers of unique training problems (regimes) at one token budget, each over
several seeds (a seed changes the training problems, the facts, the tokenizer corpus, the init and
the data order; the test problems are the same for all).

Per member (one row of `toy-grid.csv`): final train loss; greedy accuracy on 500 held-out test
problems (reasoning), on 500 of its own training problems (seen), and on its facts (memorization);
answer-token cross-entropy (nats/token, the train loss's unit) on the same test problems and facts.
Greedy decoding is transformers' batched `generate` (left-padded, one process per member: no engine
start, which at ~1M parameters costs more than the decoding); `moelab toy eval` (vLLM) measures the
same greedy accuracy of a shipped member within a point (`tests/test_toy_grid.py`). The summary
(`toy-grid-summary.csv`, and as a table `toy-grid-summary.md`) gives, per (regime, E, k), the mean
and a 95% Student-t interval over seeds; the figure (`toy-grid.png`) draws the accuracies against E
with those intervals.

Members train in `workers` processes, one torch thread each (the toy recipe's `threads: 1`), and
each finished member's row is kept twice: in `members/.../measure.json` beside its weights, and in the
table itself, rewritten as each member finishes, its sidecar recording the grid's settings (the member
recipe as resolved, what is measured). A rerun trains and measures only what is missing from both; so a
grid whose table is committed (e.g. under docs/results) resumes on another machine or in a fresh clone,
where `models_dir` is gone, as long as its settings are the same (a row of other settings is redone).
"""

from __future__ import annotations

import json
import math
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from core.errors import UserError
from core.files import atomic_write_csv
from core.provenance import write_sidecar

GRID_COLUMNS = ["regime", "num_train_problems", "num_experts", "top_k", "seed", "member", "total_params",
                "active_params", "tokens_seen", "train_loss", "reasoning_accuracy", "seen_problem_accuracy",
                "memorization_accuracy", "reasoning_loss", "memorization_loss", "num_test", "num_seen", "num_facts",
                "train_seconds", "measure_seconds"]
SUMMARY_METRICS = ["train_loss", "reasoning_accuracy", "seen_problem_accuracy", "memorization_accuracy",
                   "reasoning_loss", "memorization_loss"]
PAIRED_METRICS = ["reasoning_accuracy", "memorization_accuracy", "train_loss"]  # against the regime's dense member


# ---------------------------------------------------------------------------------------------------- measuring


def greedy_accuracy(model: Any, tokenizer: Any, rows: list[dict]) -> float:
    """Share of `rows` (load_problems rows) whose greedy completion the lab's checker judges correct."""
    from inference.generation.greedy import greedy_completions
    from inference.toy.evaluate import count_correct
    from tasks.prompts import STUDY_STOP_STRINGS, format_prompt
    from tasks.toy import MAX_NEW_TOKENS

    completions = greedy_completions(model, tokenizer, [format_prompt(r["question"]) for r in rows],
                                     max_new_tokens=MAX_NEW_TOKENS, batch_size=128, add_special_tokens=True,
                                     stop=STUDY_STOP_STRINGS, sort_by_length=True)
    return sum(count_correct(rows, [[text] for text in completions])) / len(rows)


def answer_loss(model: Any, tokenizer: Any, rows: list[dict]) -> float:
    """Answer-token cross-entropy (nats/token, token-weighted as the train loss) of the gold solutions."""
    from inference.instruments.taskloss import HFTaskLoss
    from tasks.prompts import format_prompt

    pairs = [{"prompt": format_prompt(r["question"]), "answer": " " + r["solution"]} for r in rows]
    losses = HFTaskLoss(model_and_tokenizer=(model, tokenizer), batch_size=64).score(pairs)
    return sum(x.nll_nats for x in losses) / sum(x.answer_tokens for x in losses)


def member_data(recipe: Any, num_test: int, num_seen: int, split: str = "test") -> dict[str, list[dict]]:
    """The three problem sets a member is measured on: the shared held-out problems (seed 0, of `split`:
    validation while choosing a recipe, test once), the first `num_seen` of its own training problems, and
    all of its facts (both from its recipe). The key stays "test" whatever the split."""
    from tasks.datasets import load_problems

    task = recipe.task
    difficulty = {"min_steps": task.min_steps, "max_steps": task.max_steps, "max_operand": task.max_operand}
    return {
        "test": load_problems("toy", split, num_problems=num_test, seed=0, **difficulty),
        "seen": load_problems("toy", "train", num_problems=task.num_train_problems, seed=recipe.seed,
                              **difficulty)[:num_seen],
        "facts": load_problems("toy_facts", "train", num_problems=task.num_facts, seed=recipe.seed),
    }


def measure_member(model_dir: str | Path, recipe: Any, *, num_test: int = 500, num_seen: int = 500,
                   split: str = "test") -> dict:
    """Accuracies and task losses of the member saved in `model_dir`, trained from `recipe` (held-out: `split`)."""
    from checkpoints_index.loading import load_checkpoint

    start = time.time()
    model, tokenizer = load_checkpoint(str(model_dir), dtype="float32")
    model.eval()
    data = member_data(recipe, num_test, num_seen, split)
    row = {"reasoning_accuracy": greedy_accuracy(model, tokenizer, data["test"]),
           "seen_problem_accuracy": greedy_accuracy(model, tokenizer, data["seen"]),
           "memorization_accuracy": greedy_accuracy(model, tokenizer, data["facts"]) if data["facts"] else None,
           "reasoning_loss": answer_loss(model, tokenizer, data["test"]),
           "memorization_loss": answer_loss(model, tokenizer, data["facts"]) if data["facts"] else None,
           "num_test": len(data["test"]), "num_seen": len(data["seen"]), "num_facts": len(data["facts"])}
    row["measure_seconds"] = round(time.time() - start, 1)
    return row


# ---------------------------------------------------------------------------------------------------- the grid


def member_recipe(grid: Any, regime: Any, experts: int, top_k: int, seed: int) -> Any:
    """The toy train recipe of one grid member: the grid's base recipe with its regime, E, k, seed and directory."""
    from omegaconf import OmegaConf

    from checkpoints_index.toy.schema import ToyTrainConfig
    from core.config import load_config

    # The grid's `train_overrides`, then the regime's, are the person's dotted keys; what places the member is the
    # grid's own, merged last.
    sources = [grid.train_overrides, regime.get("train_overrides") or {}]
    overrides = [f"{key}={value}" for source in sources
                 for key, value in (OmegaConf.to_container(source) if OmegaConf.is_config(source) else source).items()]
    values = {"seed": seed, "members": [f"E{experts}-k{top_k}"],
              "task": {"num_train_problems": regime.num_train_problems},
              "output_dir": str(Path(grid.models_dir) / regime.name / f"seed{seed}")}
    return load_config(grid.train_recipe, overrides, schema=ToyTrainConfig, values=values)


def _train_and_measure(grid_yaml: str, regime_name: str, experts: int, top_k: int, seed: int) -> dict:
    """One grid member, in a worker process: train it unless its weights exist, then measure it."""
    import torch
    from omegaconf import OmegaConf

    from checkpoints_index.toy.train import member_name, train_family

    grid = OmegaConf.create(grid_yaml)
    regime = next(r for r in grid.regimes if r.name == regime_name)
    recipe = member_recipe(grid, regime, experts, top_k, seed)
    torch.set_num_threads(recipe.threads or 1)
    name = member_name(recipe.model.hidden_size, experts, top_k)
    member_dir = Path(recipe.output_dir) / name
    if not (member_dir / "training.json").is_file():
        train_family(recipe)
    training = json.loads((member_dir / "training.json").read_text())
    row = {"regime": regime.name, "num_train_problems": regime.num_train_problems, "num_experts": experts,
           "top_k": top_k, "seed": seed, "member": name, "total_params": training["total_params"],
           "active_params": training["active_params"], "tokens_seen": training["tokens_seen"],
           "train_loss": training["final_train_loss"], "train_seconds": training["train_seconds"],
           **measure_member(member_dir, recipe, num_test=grid.num_test, num_seen=grid.num_seen,
                            split=grid.eval_split)}
    record = {**row, "eval_split": grid.eval_split, "settings": regime_settings(grid, regime)}
    (member_dir / "measure.json").write_text(json.dumps(record, indent=2) + "\n")
    return row


def grid_cells(grid: Any) -> list[tuple[str, int, int, int]]:
    """(regime, E, k, seed) of every member: per regime the grid at `top_k`, then that regime's
    `extra_members` (e.g. the shipped family's k = 4 member), each given as {regime, experts, top_k, seed}."""
    if not grid.regimes or not grid.experts or not grid.seeds:
        raise UserError("toy grid: regimes, experts and seeds must each list at least one value")
    regimes = [r.name for r in grid.regimes]
    for extra in grid.extra_members:
        if extra.regime not in regimes:
            raise UserError(f"toy grid: extra_members names regime {extra.regime!r}; the regimes are "
                            f"{', '.join(regimes)}")
    cells = []
    for regime in regimes:  # regime by regime, each with its extra members, so a regime finishes whole first
        cells += [(regime, e, grid.top_k, s) for e in grid.experts for s in grid.seeds]
        cells += [(x.regime, x.experts, x.top_k, x.seed) for x in grid.extra_members if x.regime == regime]
    for regime, experts, top_k, _ in cells:
        if not 2 <= top_k <= experts:
            raise UserError(f"toy grid: need 2 <= top_k <= E; got E={experts}, k={top_k}")
    return cells


def regime_settings(grid: Any, regime: Any) -> dict:
    """What makes a member's row in `regime`: its recipe as resolved (the base recipe with the grid's and the
    regime's `train_overrides`; less what the grid sets per member: seed, members, output_dir) and what is
    measured. A row measured earlier is reused only under the same settings."""
    from omegaconf import OmegaConf

    recipe = OmegaConf.to_container(member_recipe(grid, regime, grid.top_k, grid.top_k, 0))
    for key in ("seed", "members", "output_dir"):
        recipe.pop(key, None)
    return {"recipe": recipe, "num_test": grid.num_test, "num_seen": grid.num_seen, "eval_split": grid.eval_split}


def grid_settings(grid: Any) -> dict[str, dict]:
    """`regime_settings` of every regime, by name: what the table's sidecar records."""
    return {regime.name: regime_settings(grid, regime) for regime in grid.regimes}


def rows_in_table(grid: Any, settings: dict[str, dict]) -> dict[tuple, dict]:
    """The rows of `grid.results` whose regime was measured under the same `settings` as now, by cell."""
    import csv

    from core.provenance import sidecar_path

    table, sidecar = Path(grid.results), sidecar_path(grid.results)
    if not (table.is_file() and sidecar.is_file()):
        return {}
    recorded = json.loads(sidecar.read_text()).get("settings") or {}
    return {(r["regime"], int(r["num_experts"]), int(r["top_k"]), int(r["seed"])): r
            for r in csv.DictReader(table.open())
            if r["regime"] in settings and recorded.get(r["regime"]) == settings[r["regime"]]}


def measured_row(path: Path, settings: dict) -> dict:
    """The row in a member's measure.json if it was measured under `settings` ({} otherwise: measure it again).
    Weights of another recipe in the same place are refused: they would be measured as this recipe's."""
    if not path.is_file():
        return {}
    measured = json.loads(path.read_text())
    recorded = measured.pop("settings", None)
    split = measured.pop("eval_split", "test")
    if recorded is None:  # written before settings were recorded: as then, reused on the same split
        return measured if split == settings["eval_split"] else {}
    if recorded["recipe"] != settings["recipe"]:
        raise UserError(f"toy grid: {path.parent} holds a member trained from another recipe than this grid's: "
                        "give the grid its own models_dir (or delete that folder to retrain it)")
    return measured if recorded == settings else {}


def run_grid(grid: Any) -> dict[str, Path]:
    """Train and measure every (regime, E, seed) cell missing a row; write the table, summary and figure."""
    from omegaconf import OmegaConf

    cells = grid_cells(grid)
    models = Path(grid.models_dir)
    settings = grid_settings(grid)
    tabled = rows_in_table(grid, settings)
    rows: dict[tuple, dict] = {}
    todo = []
    for cell in cells:
        regime, experts, top_k, seed = cell
        hidden = settings[regime]["recipe"]["model"]["hidden_size"]  # the regime's, overrides included
        done = models / regime / f"seed{seed}" / f"toy-d{hidden}-E{experts}-k{top_k}" / "measure.json"
        measured = measured_row(done, settings[regime])  # measured under other settings: measured again
        if measured:
            rows[cell] = measured
        elif cell in tabled:  # its weights are gone (another machine, a fresh clone), its row is not
            rows[cell] = tabled[cell]
        else:
            todo.append(cell)
    # trained seed by seed within a regime (every E of seed 0, then of seed 1, ...): a grid stopped part-way
    # leaves whole seeds, which the paired contrasts (`add_paired_contrasts`) can use
    regime_order = [r.name for r in grid.regimes]
    todo.sort(key=lambda c: (regime_order.index(c[0]), c[3], c[2], c[1]))
    print(f"toy grid: {len(cells)} members, {len(rows)} already measured, {len(todo)} to train and measure "
          f"with {grid.workers} worker(s)", flush=True)

    def checkpoint(**extra: Any) -> dict[str, Path]:
        """The table as measured so far (cells in grid order), its summary and figure, and its sidecar: the
        grid's resume point, readable while the grid runs."""
        paths = write_grid_outputs([rows[c] for c in cells if c in rows], Path(grid.results))
        paths["provenance"] = write_sidecar(grid.results, settings=settings, workers=grid.workers,
                                            members=len(cells), measured=len(rows), trained_this_run=len(todo),
                                            eval_split=grid.eval_split, **extra)
        return paths

    grid_yaml = OmegaConf.to_yaml(grid)
    start = time.time()
    if todo:
        # spawn: fresh interpreters, so no worker inherits the parent's torch threads or locks
        with ProcessPoolExecutor(max_workers=max(1, grid.workers), mp_context=get_context("spawn")) as pool:
            futures = {pool.submit(_train_and_measure, grid_yaml, *cell): cell for cell in todo}
            for future in as_completed(futures):
                row = future.result()
                rows[futures[future]] = row
                print(f"[{len(rows)}/{len(cells)}] {row['regime']} {row['member']} seed {row['seed']}: train "
                      f"loss {row['train_loss']:.3f}, reasoning {row['reasoning_accuracy']:.3f}, seen "
                      f"{row['seen_problem_accuracy']:.3f}, memorization {row['memorization_accuracy']:.3f} "
                      f"({time.time() - start:.0f} s)", flush=True)
                checkpoint(seconds=round(time.time() - start), complete=False)
    # the job's own timing, beside its table: this invocation's wall time and how much of the grid it trained
    return checkpoint(seconds=round(time.time() - start), complete=True)


# ---------------------------------------------------------------------------------------------------- summary


def summarize_grid(rows: list[dict]) -> list[dict]:
    from core.stats import t_interval

    """Per (regime, E, k), in regime order then by k and E: number of seeds and mean / 95% t-interval of
    every metric (clipped to the metric's range; NaN bounds with one seed stay NaN)."""
    cells: dict[tuple, list[dict]] = {}
    for row in rows:
        cells.setdefault((row["regime"], int(row["num_experts"]), int(row["top_k"])), []).append(row)
    summary = []
    for (regime, experts, top_k), members in cells.items():
        first = members[0]  # rows as written (ints) or as read back from the CSV (strings)
        out = {"regime": regime, "num_train_problems": int(first["num_train_problems"]), "num_experts": experts,
               "top_k": top_k, "total_params": int(first["total_params"]), "active_params": int(first["active_params"]),
               "seeds": len(members)}
        for metric in SUMMARY_METRICS:
            values = [float(m[metric]) for m in members if m.get(metric) not in (None, "")]
            if values:
                mean, low, high = t_interval(values)
                # a t-interval over 3 seeds can leave the feasible range: clip to it (accuracy in [0, 1], loss >= 0)
                upper = 1.0 if metric.endswith("accuracy") else math.inf
                out[metric], out[f"{metric}_low"], out[f"{metric}_high"] = mean, max(low, 0.0), min(high, upper)
        summary.append(out)
    add_paired_contrasts(summary, cells)
    regimes = list(dict.fromkeys(row["regime"] for row in rows))
    return sorted(summary, key=lambda s: (regimes.index(s["regime"]), s["top_k"], s["num_experts"]))


def add_paired_contrasts(summary: list[dict], cells: dict[tuple, list[dict]]) -> None:
    """Each cell against its regime's reference (smallest k, then smallest E: the dense E = k member), seed by
    seed: a seed fixes the problems, facts, tokenizer and data order of every member, so much of a seed's luck
    is shared across E and the paired difference (mean and 95% t-interval over the seeds both have) can be
    narrower than either cell's own interval. Columns `<metric>_vs_ref[_low|_high]` and `reference`."""
    from core.stats import t_interval

    for s in summary:
        regime_cells = [key for key in cells if key[0] == s["regime"]]
        reference = min(regime_cells, key=lambda key: (key[2], key[1]))
        s["reference"] = f"E{reference[1]}-k{reference[2]}"
        if reference == (s["regime"], s["num_experts"], s["top_k"]):
            continue
        ref_by_seed = {int(m["seed"]): m for m in cells[reference]}
        for metric in PAIRED_METRICS:
            diffs = [float(m[metric]) - float(ref_by_seed[int(m["seed"])][metric])
                     for m in cells[(s["regime"], s["num_experts"], s["top_k"])]
                     if int(m["seed"]) in ref_by_seed and m.get(metric) not in (None, "")
                     and ref_by_seed[int(m["seed"])].get(metric) not in (None, "")]
            if len(diffs) >= 2:
                s[f"{metric}_vs_ref"], s[f"{metric}_vs_ref_low"], s[f"{metric}_vs_ref_high"] = t_interval(diffs)


def plot_grid(summary: list[dict], path: Path, rows: list[dict] = ()) -> Path:
    """Reasoning (held-out and seen) and memorization accuracy against E, one panel per regime: the mean
    with its 95% interval over seeds, and every seed as a faint dot (`rows`), so the spread is visible."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    regimes = list(dict.fromkeys(s["regime"] for s in summary))
    fig, axes = plt.subplots(1, len(regimes), figsize=(4.2 * len(regimes), 3.6), sharey=True, squeeze=False)
    for ax, regime in zip(axes[0], regimes):
        top_k = min(s["top_k"] for s in summary)  # the grid's k; extra members (other k) are in the tables only
        cells = sorted((s for s in summary if s["regime"] == regime and s["top_k"] == top_k),
                       key=lambda s: s["num_experts"])
        xs = [s["num_experts"] for s in cells]
        for metric, label, color in [("reasoning_accuracy", "reasoning (held-out test)", "tab:blue"),
                                     ("seen_problem_accuracy", "reasoning (seen train problems)", "tab:gray"),
                                     ("memorization_accuracy", "memorization (facts)", "tab:orange")]:
            if not all(metric in s for s in cells):
                continue
            means = [s[metric] for s in cells]
            low = [s[metric] - s[f"{metric}_low"] if not math.isnan(s[f"{metric}_low"]) else 0 for s in cells]
            high = [s[f"{metric}_high"] - s[metric] if not math.isnan(s[f"{metric}_high"]) else 0 for s in cells]
            ax.errorbar(xs, means, yerr=[low, high], marker="o", capsize=3, label=label, color=color)
            seeds = [(int(r["num_experts"]), float(r[metric])) for r in rows if r["regime"] == regime
                     and int(r["top_k"]) == top_k and r.get(metric) not in (None, "")]
            ax.scatter([x for x, _ in seeds], [y for _, y in seeds], s=12, alpha=0.35, color=color)
        ax.set_xscale("log", base=2)
        ax.set_xticks(xs, [str(x) for x in xs])
        ax.set_xlabel(f"experts E (top-k = {cells[0]['top_k']}; E = k is dense)")
        ax.set_title(f"{cells[0]['num_train_problems']:,} unique problems ({cells[0]['seeds']} seeds)")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("greedy accuracy")
    fig.suptitle("mean and 95% t-interval over seeds; dots: single seeds", fontsize=9)
    axes[0][-1].legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def summary_markdown(summary: list[dict]) -> str:
    """The summary as a markdown table (what the READMEs show): mean [95% t-interval] over seeds."""
    def cell(s: dict, metric: str, percent: bool) -> str:
        if metric not in s:
            return "-"
        scale, digits = (100, 1) if percent else (1, 4)
        values = [scale * s[metric], scale * s[f"{metric}_low"], scale * s[f"{metric}_high"]]
        return f"{values[0]:.{digits}f} [{values[1]:.{digits}f}, {values[2]:.{digits}f}]"

    lines = ["| regime | member | total params | seeds | train loss | reasoning acc % (held-out) | seen-problem acc % "
             "| memorization acc % | reasoning loss | memorization loss |", "|---" * 10 + "|"]
    for s in summary:
        lines.append(f"| {s['num_train_problems']:,} problems | E{s['num_experts']}-k{s['top_k']} | {s['total_params']:,} | "
                     f"{s['seeds']} | {cell(s, 'train_loss', False)} | {cell(s, 'reasoning_accuracy', True)} | "
                     f"{cell(s, 'seen_problem_accuracy', True)} | {cell(s, 'memorization_accuracy', True)} | "
                     f"{cell(s, 'reasoning_loss', False)} | {cell(s, 'memorization_loss', False)} |")
    return "\n".join(lines) + "\n"


def write_grid_outputs(rows: list[dict], results: Path) -> dict[str, Path]:
    """`results` (the per-member table), `<stem>-summary.csv`, `<stem>-summary.md` and `<stem>.png` beside it."""
    results.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_csv(results, rows, GRID_COLUMNS)
    summary = summarize_grid(rows)
    columns = ["regime", "num_train_problems", "num_experts", "top_k", "total_params", "active_params", "seeds"]
    columns += [f"{m}{suffix}" for m in SUMMARY_METRICS for suffix in ("", "_low", "_high")]
    columns += ["reference", *(f"{m}_vs_ref{suffix}" for m in PAIRED_METRICS for suffix in ("", "_low", "_high"))]
    summary_path = results.with_name(f"{results.stem}-summary.csv")
    atomic_write_csv(summary_path, summary, columns)
    markdown = summary_path.with_suffix(".md")
    markdown.write_text(summary_markdown(summary))
    figure = plot_grid(summary, results.with_suffix(".png"), rows)
    print(f"wrote {results}, {summary_path}, {markdown} and {figure}", flush=True)
    return {"table": results, "summary": summary_path, "markdown": markdown, "figure": figure}
