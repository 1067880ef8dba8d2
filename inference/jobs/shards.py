"""`--shard I/N`: one task of a cluster array's share of a many-model job (`moelab eval|taskloss|sweep`).

Why it is shaped this way: an array runs the same command N times and only the index differs, so a
task's share must be a pure function of (recipe, I, N). No coordinator, no lock, no queue: every task
computes the same split and takes its own part. Tasks write only per-model results, each one atomically
(`core.files`), into the recipe's one output directory; they never write the tables. The same command
without `--shard`, run once every task has finished, finds those results done, computes nothing again,
and writes the tables (results.csv, taskloss.csv; the sweep's scored.parquet, metrics.csv and plots).

Which task gets what (`shard_items`, `sweep_work`):
- eval and taskloss: whole models, round robin: task I takes models I, I+N, I+2N, ... of the recipe's list,
  so a model's weights load in one task only. With more tasks than models, the extra tasks have nothing
  to do and exit 0 (an array sized for a bigger recipe still succeeds, and its `afterok` collect runs).
- sweep, at least as many models as tasks: the same round robin over whole models.
- sweep, fewer models (M) than tasks (N): task I takes model I mod M, and the tasks that share a model
  split its problems as the sweep's `--shard` always did: every c-th problem from the j-th (j = I // M,
  c = the number of tasks sharing that model), all samples of a problem in one task. With one model this
  is exactly the per-problem split of earlier versions.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable, Hashable, Sequence
from typing import Any, NamedTuple, TypeVar

from core.errors import UserError

T = TypeVar("T")
FORM = "I/N with 0 <= I < N (e.g. --shard 0/4 ... --shard 3/4)"


class Shard(NamedTuple):
    """Task `index` of `count` (a tuple, so `(0, 2)` works wherever a Shard is expected)."""

    index: int
    count: int

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def parse_shard(text: str) -> Shard:
    """`I/N` -> Shard(I, N); anything else is one UserError line naming `--shard` and the form."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(text))
    if not match or not 0 <= int(match[1]) < int(match[2]):
        raise UserError(f"--shard must be {FORM}; got {text!r}")
    return Shard(int(match[1]), int(match[2]))


def add_shard_argument(parser: argparse.ArgumentParser, what: str) -> None:
    """The one `--shard` option of eval, taskloss and sweep (parsed by `parse_shard` in their `run`, so a bad
    value is one `error:` line and exit status 2 like every other user error)."""
    parser.add_argument("--shard", default=None, metavar="I/N",
                        help=f"run only task I of N of a cluster array ({what}; inference/jobs/shards.py says which "
                             f"task gets what), writing per-model results into output_dir; afterwards the same "
                             f"command without --shard computes nothing done and writes the tables "
                             f"(scripts/slurm_array.sh, scripts/pbs_array.sh)")


def shard_items(items: Sequence[T], shard: Shard | tuple[int, int] | None,
                key: Callable[[T], Hashable] = lambda item: item) -> list[T]:
    """The items of task I of N: those whose key is the I-th, (I+N)-th, ... distinct key in order. Items with
    one key stay together (a problem's samples); the tasks' parts are disjoint and cover `items`."""
    if shard is None:
        return list(items)
    index, count = shard
    ordinal: dict[Hashable, int] = {}
    return [item for item in items if ordinal.setdefault(key(item), len(ordinal)) % count == index]


def sweep_work(models: Sequence[str], shard: Shard | tuple[int, int] | None) -> list[tuple[str, Shard | None]]:
    """(model, its problems' shard: None = all problems) for every model task I of N generates (module doc)."""
    if shard is None:
        return [(model, None) for model in models]
    index, count = shard
    if len(models) >= count:
        return [(model, None) for model in shard_items(models, shard)]
    first = index % len(models)
    sharing = len(range(first, count, len(models)))  # the tasks I' = first, first + M, ... < N
    return [(models[first], Shard(index // len(models), sharing) if sharing > 1 else None)]


def announce(shard: Shard | tuple[int, int] | None, mine: Sequence[Any], total: int) -> None:
    """One line saying what this task does, so an array's logs say which task ran which model."""
    if shard is None:
        return
    index, count = shard
    if not mine:
        print(f"shard {index}/{count}: nothing to do (more tasks than the recipe's {total} models)", flush=True)
        return
    print(f"shard {index}/{count}: {', '.join(str(m) for m in mine)} ({len(mine)} of {total} models)", flush=True)


def finished_line(shard: Shard | tuple[int, int]) -> str:
    """What a task prints last: the next step, the collect run."""
    return (f"shard {shard[0]}/{shard[1]} done; once all {shard[1]} are, run the same command without --shard "
            f"to write the tables (it computes nothing done)")
