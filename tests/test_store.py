"""Sample store: round trip, content addresses, crash safety of shards, defensive de-duplication."""

from __future__ import annotations

import os

import pyarrow.parquet as pq
import pytest

from inference.generation.store import SAMPLE_SCHEMA, SampleStore, sample_key, sample_seed

SAMPLING = {"temperature": 0.6, "top_p": 0.95, "max_new_tokens": 64, "stop": ["Question:"]}


def row(i: int, **changes) -> dict:
    base = {name: None for name in SAMPLE_SCHEMA.names}
    base.update(key=sample_key("m", None, f"prompt {i // 4}", SAMPLING, 100 + i, i % 4), model="m",
                dataset="toy", problem_id=f"p{i // 4}", sample_idx=i % 4, completion=f"answer {i}", num_tokens=i + 1,
                cumulative_logprob=-float(i), mean_logprob=-float(i) / (i + 1), finish_reason="stop", seed=100 + i,
                temperature=0.6, top_p=0.95)
    base.update(changes)
    return base


def test_round_trip_keeps_every_column(tmp_path):
    store = SampleStore(tmp_path)
    rows = [row(i) for i in range(10)]
    store.write(rows[:6])
    store.write(rows[6:])
    table = store.read()
    assert table.num_rows == 10
    assert table.schema == SAMPLE_SCHEMA
    got = {r["key"]: r for r in table.to_pylist()}
    for r in rows:
        assert got[r["key"]]["completion"] == r["completion"]
        assert got[r["key"]]["num_tokens"] == r["num_tokens"]
        assert got[r["key"]]["mean_logprob"] == pytest.approx(r["mean_logprob"])
    # a fresh handle on the same directory sees the same keys (nothing held only in memory)
    assert SampleStore(tmp_path).keys() == {r["key"] for r in rows}


def test_read_selected_keys_and_columns(tmp_path):
    store = SampleStore(tmp_path)
    rows = [row(i) for i in range(8)]
    store.write(rows)
    wanted = [rows[1]["key"], rows[5]["key"]]
    table = store.read(keys=wanted, columns=["completion"])
    assert table.column_names == ["key", "completion"]
    assert sorted(table.column("completion").to_pylist()) == ["answer 1", "answer 5"]


def test_key_changes_with_everything_that_determines_a_sample():
    base = sample_key("m", None, "p", SAMPLING, 1, 0)
    assert base == sample_key("m", None, "p", dict(SAMPLING), 1, 0)
    variants = [sample_key("m2", None, "p", SAMPLING, 1, 0), sample_key("m", "rev", "p", SAMPLING, 1, 0),
                sample_key("m", None, "q", SAMPLING, 1, 0),
                sample_key("m", None, "p", {**SAMPLING, "top_p": 1.0}, 1, 0),
                sample_key("m", None, "p", SAMPLING, 2, 0), sample_key("m", None, "p", SAMPLING, 1, 1)]
    assert len({base, *variants}) == 7


def test_sample_seeds_are_consecutive_per_prompt_and_differ_between_prompts():
    seeds = [sample_seed(0, "prompt a", i) for i in range(4)]
    assert seeds == list(range(seeds[0], seeds[0] + 4))
    assert sample_seed(0, "prompt b", 0) != seeds[0]
    assert sample_seed(1, "prompt a", 0) != seeds[0]
    assert 0 <= seeds[-1] < 2 ** 31


def test_duplicates_across_shards_are_dropped_first_written_wins(tmp_path):
    store = SampleStore(tmp_path)
    store.write([row(0), row(1)])
    store.write([row(1, completion="rewritten"), row(2)])
    table = store.read()
    assert table.num_rows == 3
    completions = dict(zip(table.column("key").to_pylist(), table.column("completion").to_pylist()))
    assert completions[row(1)["key"]] == "answer 1"


def test_temporary_and_unreadable_files_are_ignored(tmp_path):
    store = SampleStore(tmp_path)
    store.write([row(0)])
    # what a writer killed mid-write leaves behind: a half-written temporary shard
    (tmp_path / ".tmp-shard-99999999999999999999-1-deadbeef.parquet").write_bytes(b"PAR1 half a shard")
    with pytest.warns(UserWarning, match="unreadable shard"):
        (tmp_path / "shard-99999999999999999999-1-corrupt0.parquet").write_bytes(b"garbage")
        assert SampleStore(tmp_path).read().num_rows == 1
    assert store.remove_temporaries() == 1
    assert not list(tmp_path.glob(".tmp-*"))


def test_write_leaves_only_complete_shards(tmp_path):
    store = SampleStore(tmp_path)
    path = store.write([row(i) for i in range(5)])
    assert path is not None and path.name.startswith("shard-")
    assert sorted(os.listdir(tmp_path)) == [path.name]
    assert pq.read_table(path).num_rows == 5
    assert store.write([]) is None
