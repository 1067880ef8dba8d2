"""`core.files.atomic_write`: the target appears whole or not at all, and no temporary is left behind."""

from __future__ import annotations

import os

import pytest

from core.files import TEMP_PREFIX, atomic_write, temporary_path


def test_writes_the_file_under_its_name_and_leaves_nothing_else(tmp_path):
    target = tmp_path / "table.parquet"
    assert atomic_write(target, lambda temp: temp.write_bytes(b"new")) == target
    assert target.read_bytes() == b"new"
    assert os.listdir(tmp_path) == ["table.parquet"]


def test_the_writer_sees_a_hidden_name_in_the_same_directory_with_the_same_suffix(tmp_path):
    target = tmp_path / "scores.parquet"
    seen = []

    def write(temp):
        seen.append(temp)
        assert not target.exists()  # nothing under the final name while the writer runs
        temp.write_text("x")

    atomic_write(target, write)
    assert seen == [temporary_path(target)]
    assert seen[0].parent == tmp_path and seen[0].name.startswith(TEMP_PREFIX) and seen[0].suffix == ".parquet"


def test_a_writer_that_raises_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "cache.parquet"
    target.write_bytes(b"old")

    def half_then_fail(temp):
        temp.write_bytes(b"half of the new")
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError, match="killed mid-write"):
        atomic_write(target, half_then_fail)
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["cache.parquet"]


def test_an_interrupted_first_write_leaves_no_target(tmp_path):
    target = tmp_path / "scored.parquet"

    def interrupted(temp):
        temp.write_bytes(b"partial")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, interrupted)
    assert os.listdir(tmp_path) == []


def test_a_leftover_temporary_of_a_killed_run_is_overwritten(tmp_path):
    target = tmp_path / "scored.parquet"
    temporary_path(target).write_bytes(b"what a SIGKILL left")
    atomic_write(target, lambda temp: temp.write_bytes(b"complete"))
    assert target.read_bytes() == b"complete" and os.listdir(tmp_path) == ["scored.parquet"]


def _write_in_step(path: str, barrier, concurrent: bool) -> None:
    def write(temporary):
        temporary.write_text("same content\n")
        barrier.wait(timeout=30)  # both have written their temporary before either renames it

    atomic_write(path, write, concurrent=concurrent)


@pytest.mark.parametrize("concurrent", [True, False])
def test_concurrent_writers_of_one_file_each_use_their_own_temporary(tmp_path, concurrent):
    """Two array tasks writing the same shared file at once: with `concurrent=True` both succeed and the
    file is whole; with the one fixed temporary name the second rename finds the temporary gone."""
    import multiprocessing

    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(2)
    target = tmp_path / "shared.jsonl"
    writers = [context.Process(target=_write_in_step, args=(str(target), barrier, concurrent)) for _ in range(2)]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(60)
    codes = sorted(writer.exitcode for writer in writers)
    if concurrent:
        assert codes == [0, 0] and target.read_text() == "same content\n"
        assert [p.name for p in tmp_path.iterdir()] == ["shared.jsonl"]
    else:
        assert codes != [0, 0]
