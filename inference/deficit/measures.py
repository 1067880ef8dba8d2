"""What a deficit.csv row is: a `Measure` (what was measured) and a `Row` (its columns, and the test behind it).

`Measure.name` is the one spelling of the `measure` column. The analysis builds measures, the figures,
the report and the demo report look rows up by measure (`Analysis.row`, or `Measure.name` against a
deficit.csv read back): no module formats a name by hand or parses one, so renaming a measure
changes one function. Gap and peak rows keep the test result they summarise (`Row.gap`, `Row.peak`)
as named fields: the CSV writes only DEFICIT_COLUMNS (`Row.cells`), the report quotes the rest.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, NamedTuple

INDEX_COLUMNS = ["d_model", "num_experts", "top_k", "total_params", "active_params", "tpp", "density"]
DEFICIT_COLUMNS = ["model", "measure", "value", "ci_low", "ci_high", "num_problems", "source", "verdict", "detail",
                   *INDEX_COLUMNS]
GREEDY = "greedy"  # the strategy name of the one sample at T=0 (the sweep's `greedy` setting)


def sampled_budget(strategy: str, k: int) -> tuple[str, int]:
    """(strategy, k) as the changes, gaps and figures name it: at k=1 every strategy is pass@1 (one sample)."""
    return ("pass", 1) if k == 1 else (strategy, k)


@dataclass(frozen=True)
class Measure:
    """What one deficit.csv row measures; `name` is the only place its `measure` cell is spelled.

    kind      accuracy, loss: an instrument's (lm-eval, taskloss) on `task` (reasoning | memorization);
              sweep: the `phase` sweep's accuracy at the budget; grpo_change: after - before at the budget,
              paired; gap_ttc: a pair's gap from pass@1 to the budget in `phase`; gap_grpo: a pair's gap
              from before to after GRPO at the budget; tpp_peak: a family's pass@1 peak along TPP in `phase`
    phase     before | after (GRPO)
    strategy  pass, majority, ... at `k` samples, or greedy
    Build one with the constructors below: they leave the fields a kind does not use at their defaults, so
    the analysis and a reader that build the same measure get equal (hashable) values.
    """

    kind: str
    task: str = ""
    phase: str = ""
    strategy: str = "pass"
    k: int = 1

    @classmethod
    def accuracy(cls, task: str) -> Measure:
        return cls("accuracy", task=task)

    @classmethod
    def loss(cls, task: str) -> Measure:
        return cls("loss", task=task)

    @classmethod
    def sweep(cls, phase: str, strategy: str, k: int = 1) -> Measure:
        return cls("sweep", phase=phase, strategy=strategy, k=k)

    @classmethod
    def change(cls, strategy: str, k: int = 1) -> Measure:
        return cls("grpo_change", strategy=strategy, k=k)

    @classmethod
    def ttc_gap(cls, phase: str, strategy: str, k: int) -> Measure:
        return cls("gap_ttc", phase=phase, strategy=strategy, k=k)

    @classmethod
    def grpo_gap(cls, strategy: str, k: int = 1) -> Measure:
        return cls("gap_grpo", strategy=strategy, k=k)

    @classmethod
    def peak(cls, phase: str) -> Measure:
        return cls("tpp_peak", phase=phase)

    @property
    def budget(self) -> str:
        """`greedy`, `pass@1`, `majority@32`: how the report's tables and legends name the budget."""
        return GREEDY if self.strategy == GREEDY else f"{self.strategy}@{self.k}"

    @property
    def name(self) -> str:
        """deficit.csv's `measure` cell: `reasoning_accuracy`, `before_majority@32`, `grpo_change_greedy`,
        `gap_ttc pass@1->majority@32 (before GRPO)`, `gap_grpo pass@1 (before->after)`,
        `tpp_peak pass@1 (after GRPO)`."""
        if self.kind in ("accuracy", "loss"):
            return f"{self.task}_{self.kind}"
        if self.kind == "sweep":
            return f"{self.phase}_{self.budget}"
        if self.kind == "grpo_change":
            return f"grpo_change_{self.budget}"
        if self.kind == "gap_ttc":
            return f"gap_ttc pass@1->{self.budget} ({self.phase} GRPO)"
        if self.kind == "gap_grpo":
            return f"gap_grpo {self.budget} (before->after)"
        if self.kind == "tpp_peak":
            return f"tpp_peak {self.budget} ({self.phase} GRPO)"
        raise ValueError(f"unknown measure kind {self.kind!r}")


class Pair(NamedTuple):
    """Two models a gap test compares (`better`: the one expected ahead) and why they were chosen."""

    better: str
    worse: str
    why: str


@dataclass
class Row:
    """One deficit.csv row: the CSV columns as fields (`index`: INDEX_COLUMNS), and what the report quotes
    beyond them: the gap test (`gap`, `pair`) or peak (`peak`) the row summarises."""

    model: str  # a model, a pair ("a vs b": gap rows) or a family ("d512 top-2": peak rows)
    measure: Measure
    value: float
    ci_low: float = math.nan
    ci_high: float = math.nan
    num_problems: Any = ""
    source: str = ""
    verdict: str = ""
    detail: str = ""
    index: dict = field(default_factory=dict)  # INDEX_COLUMNS of `model`; empty for pairs and families
    gap: dict | None = None  # `gaps.gap_test`'s result
    pair: Pair | None = None
    peak: dict | None = None  # `gaps.peak_location`'s result

    def cells(self) -> dict:
        """The row as deficit.csv writes it: DEFICIT_COLUMNS, each through `_cell`."""
        values = {"model": self.model, "measure": self.measure.name, "value": self.value, "ci_low": self.ci_low,
                  "ci_high": self.ci_high, "num_problems": self.num_problems, "source": self.source,
                  "verdict": self.verdict, "detail": self.detail, **{c: self.index.get(c, "") for c in INDEX_COLUMNS}}
        return {c: _cell(values[c]) for c in DEFICIT_COLUMNS}


def _cell(value: Any) -> Any:
    """Counts as integers, other numbers to 8 significant digits, NaN as an empty cell."""
    if not isinstance(value, float):
        return value
    if not math.isfinite(value):
        return ""
    return str(int(value)) if value.is_integer() and abs(value) < 1e15 else f"{value:.8g}"
