"""bench/grpo.py: a step is cut into the components timed inside it, and 'other' is exactly what is left.

The instrumentation patches TRL's and transformers' methods by name; the end-to-end test runs a few
steps of the toy recipe on a tiny Mixtral so that a renamed method (a component silently timed at
zero) fails here rather than in a committed breakdown.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from load_file import load_file

REPO = Path(__file__).resolve().parents[1]


def load_bench():
    return load_file(REPO / "bench" / "grpo.py", "bench_grpo")


def test_rows_cut_events_into_steps_and_other_is_the_rest():
    bench = load_bench()
    breakdown = bench.Breakdown()
    breakdown.step_ends = [0.0, 10.0, 25.0]  # the first step (before 0.0) is never a row
    for name, start, end in [("generation", -5.0, -1.0), ("generation", 1.0, 4.0), ("backward", 5.0, 8.0),
                             ("log", 0.5, 0.6), ("generation", 11.0, 20.0), ("optimizer step", 24.0, 24.5)]:
        breakdown.add(name, start, end)
    first, second = breakdown.rows()
    assert first["step"] == 10.0 and first["generation"] == 3.0 and first["backward"] == 3.0
    assert first["other"] == pytest.approx(10.0 - 3.0 - 3.0 - 0.1)
    assert second["step"] == 15.0 and second["generation"] == 9.0 and second["other"] == pytest.approx(5.5)
    summary = bench.summarize([first, second])
    assert summary["median_s"]["step"] == 12.5
    assert summary["share"]["engine"] == pytest.approx((0.3 + 0.6) / 2)  # per-step shares, then their median
    assert summary["share"]["optimizer"] == pytest.approx((0.0 + 0.5 / 15) / 2, abs=1e-4)  # rounded to 4 places
    table = "\n".join(bench.table("toy", "x", "m", {"hf": summary, "vllm": summary}))
    assert "other" in table and "engine share" in table
    assert table.endswith("(median step, HF generate / colocated vLLM)")


@pytest.mark.slow
@pytest.mark.vllm_engine
def test_every_component_is_timed_in_a_real_step(tmp_path):
    from tiny_mixtral import tiny_mixtral

    bench = load_bench()
    model = tiny_mixtral(tmp_path / "tiny")
    small = ["grpo.per_device_train_batch_size=16", "grpo.num_generations=4", "grpo.max_completion_length=16"]
    rows = {variant: bench.run_variant(model, small, 2, variant, tmp_path / variant)
            for variant in ("hf", "vllm", "vllm-before")}
    for variant, timed in rows.items():
        assert len(timed) == 2, variant
        for row in timed:
            assert row["step"] == pytest.approx(sum(row[c] for c in bench.COMPONENTS) + row["other"])
            for component in ("generation", "ref-logprob pass", "loss forward", "backward", "optimizer step", "data"):
                assert row[component] > 0, (variant, component)
            assert row["other"] < 0.5 * row["step"], (variant, row)
    assert all(row["weight sync"] == 0 and row["old-logprob pass"] == 0 for row in rows["hf"])
    assert all(row["weight sync"] > 0 and row["old-logprob pass"] == 0 for row in rows["vllm"])
    assert all(row["weight sync"] > 0 and row["old-logprob pass"] > 0 for row in rows["vllm-before"])
