"""All-or-nothing file writes: a reader, or a run resumed after SIGKILL, sees the old file or the new one.

The sample store's shards, the sweep's scored table and the reward-model score cache are all
written this way, so a killed run never leaves half a file under the final name. Steps: write
under a dot-prefixed temporary name in the same directory (a rename is atomic only within one
file system), fsync the file (the data is on disk before the name points to it), `os.replace`,
fsync the directory (the rename itself survives a power cut). A writer that raises leaves the
old file as it was and no temporary behind. Stdlib only: this is the bottom layer.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

TEMP_PREFIX = ".tmp-"  # readers skip these names; `SampleStore.remove_temporaries` deletes them


def temporary_path(path: Path) -> Path:
    """Where `atomic_write` puts `path` while it is being written (same directory, same suffix)."""
    return path.with_name(f"{TEMP_PREFIX}{path.name}")


def atomic_write(path: str | Path, write: Callable[[Path], None], *, concurrent: bool = False) -> Path:
    """Call `write(temporary)` to produce the file, then move it to `path` durably; returns `path`.

    The temporary name is fixed per target, so one writer per target is the supported use: a
    leftover from a killed run is simply overwritten by the next one. `concurrent=True` is for files
    that several processes may write at once with the same content (the tasks of a cluster array
    starting together): each writes its own temporary (the process id in its name) and the last
    rename wins.
    """
    path = Path(path)
    temp = temporary_path(path)
    if concurrent:
        temp = temp.with_name(f"{temp.name}.{os.getpid()}")
    try:
        write(temp)
        with open(temp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    _fsync_directory(path.parent)
    return path


def _fsync_directory(directory: str | Path) -> None:
    """Make renames and new names in `directory` durable (POSIX: fsync on the directory itself)."""
    handle = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


def atomic_write_csv(path: str | Path, rows: Iterable[dict], columns: Sequence[str], **options: Any) -> Path:
    """`rows` as a CSV file with the header `columns`, through `atomic_write` (parent folder created);
    `options` go to `csv.DictWriter` (e.g. `extrasaction="ignore"`, `restval=""`)."""
    import csv

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)

    def write(temp: Path) -> None:
        with temp.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(columns), **options)
            writer.writeheader()
            writer.writerows(rows)

    return atomic_write(path, write)
