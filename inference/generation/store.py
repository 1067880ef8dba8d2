"""The sample store: every generated sample on disk, content-addressed, in crash-safe parquet shards.

Why content addressing: a sample is fully determined by (model, revision, prompt, sampling
parameters, seed, sample index), so its hash is its identity. A sweep asks the store which keys
already exist and generates only the rest: re-running skips finished work, raising N from 64 to
256 generates only the new 192 samples per problem, and re-scoring (another checker, a reward
model) reads completions from here without ever loading the model.

Why shards written this way: a sweep appends one shard per generated chunk, through
`core.files.atomic_write` (a dot-prefixed temporary, fsynced, renamed, directory fsynced). A
SIGKILL at any moment therefore leaves either a complete shard or an ignored temporary file: at
most the chunk in flight is lost and no reader ever sees half a shard. Readers also drop duplicate
keys (keeping the first shard in name order), so even a chunk written twice by two racing runs
cannot produce duplicate samples. One writer per store directory is the supported
use; concurrent writers are safe for readers but may duplicate work.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
import warnings
from pathlib import Path
from typing import Any, Iterable, Sequence

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from core.files import TEMP_PREFIX, atomic_write

SHARD_GLOB = "shard-*.parquet"

SAMPLE_SCHEMA = pa.schema([
    ("key", pa.string()),
    ("model", pa.string()),
    ("revision", pa.string()),
    ("dataset", pa.string()),
    ("problem_id", pa.string()),
    ("sample_idx", pa.int32()),
    ("prompt_template", pa.string()),
    ("prompt_hash", pa.string()),
    ("temperature", pa.float64()),
    ("top_p", pa.float64()),
    ("max_new_tokens", pa.int32()),
    ("stop", pa.string()),  # JSON list
    ("seed", pa.int64()),
    ("completion", pa.string()),
    ("num_tokens", pa.int32()),
    ("prompt_tokens", pa.int32()),
    ("cumulative_logprob", pa.float64()),
    ("mean_logprob", pa.float64()),
    ("finish_reason", pa.string()),
    ("backend", pa.string()),
    ("created_at", pa.float64()),
])


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def sample_key(model: str, revision: str | None, prompt: str, sampling: dict[str, Any], seed: int,
               sample_idx: int) -> str:
    """The content address of one sample: a hash of everything that determines it."""
    identity = json.dumps([model, revision, prompt, sampling, int(seed), int(sample_idx)], sort_keys=True)
    return hashlib.sha256(identity.encode()).hexdigest()[:32]


def sample_seed(base_seed: int, prompt: str, sample_idx: int) -> int:
    """Seed of one sample: a per-prompt base (from the sweep seed and the prompt) plus the sample index.

    Consecutive indices get consecutive seeds, which is what vLLM gives the children of an `n=...`
    request (so the backends may group them); 31 bits keep every server and generator happy.
    """
    digest = hashlib.sha256(f"{base_seed}|{prompt}".encode()).digest()
    return (int.from_bytes(digest[:4], "big") & 0x3FFFFFFF) + int(sample_idx)


class SampleStore:
    """A directory of parquet shards holding samples, keyed by `sample_key`."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._keys: set[str] | None = None

    def shard_paths(self) -> list[Path]:
        """Finished shards in write order (names start with a nanosecond timestamp); temporaries ignored."""
        return sorted(p for p in self.root.glob(SHARD_GLOB) if not p.name.startswith(TEMP_PREFIX))

    def _read_shard(self, path: Path, columns: Sequence[str] | None = None) -> pa.Table | None:
        try:
            # ParquetFile, not read_table: one file needs no pyarrow.dataset (0.1-0.25 s to import)
            with pq.ParquetFile(path) as shard:
                return shard.read(columns=list(columns) if columns else None)
        except (OSError, pa.ArrowException) as err:  # cannot happen with atomic writes unless the disk lied
            warnings.warn(f"sample store: ignoring unreadable shard {path} ({err}); its samples will be regenerated")
            return None

    def keys(self) -> set[str]:
        """Every stored key (cached; updated by `write`)."""
        if self._keys is None:
            keys: set[str] = set()
            for path in self.shard_paths():
                table = self._read_shard(path, ["key"])
                if table is not None:
                    keys.update(table.column("key").to_pylist())
            self._keys = keys
        return self._keys

    def write(self, rows: Sequence[dict[str, Any]]) -> Path | None:
        """Append `rows` (dicts with SAMPLE_SCHEMA's columns) as one new shard, atomically and durably."""
        if not rows:
            return None
        table = pa.Table.from_pylist([{name: row.get(name) for name in SAMPLE_SCHEMA.names} for row in rows],
                                     schema=SAMPLE_SCHEMA)
        name = f"shard-{time.time_ns():020d}-{os.getpid()}-{uuid.uuid4().hex[:8]}.parquet"
        final = atomic_write(self.root / name, lambda temp: pq.write_table(table, temp))
        self.keys().update(table.column("key").to_pylist())
        return final

    def read(self, keys: Iterable[str] | None = None, columns: Sequence[str] | None = None) -> pa.Table:
        """All samples (or those with `keys`), one row per key (first written wins), shards in write order."""
        wanted = set(keys) if keys is not None else None
        read_columns = None if columns is None else list(dict.fromkeys(["key", *columns]))
        tables = []
        for path in self.shard_paths():
            table = self._read_shard(path, read_columns)
            if table is None:
                continue
            if wanted is not None:
                table = table.filter(pc.is_in(table.column("key"), value_set=pa.array(list(wanted),
                                                                                               pa.string())))
            tables.append(table)
        schema = SAMPLE_SCHEMA if read_columns is None else pa.schema([SAMPLE_SCHEMA.field(c) for c in read_columns])
        if not tables:
            return schema.empty_table()
        table = pa.concat_tables(tables)
        return _first_per_key(table)

    def remove_temporaries(self) -> int:
        """Delete temporary files left by killed writers (call only when no other writer is running)."""
        count = 0
        for path in self.root.glob(f"{TEMP_PREFIX}*"):
            path.unlink(missing_ok=True)
            count += 1
        return count


def _first_per_key(table: pa.Table) -> pa.Table:
    keys = table.column("key").to_pylist()
    seen: set[str] = set()
    keep = []
    for i, key in enumerate(keys):
        if key not in seen:
            seen.add(key)
            keep.append(i)
    return table if len(keep) == len(keys) else table.take(pa.array(keep, pa.int64()))
