"""A checker process: `python -m rewards.worker`, driven by `rewards.pool` over its stdin/stdout.

Why a plain subprocess and not `multiprocessing.Pool`: the reward must work inside a torch
DataLoader worker, which is a daemonic process and may not have multiprocessing children; a
`subprocess.Popen` child is allowed anywhere. Each worker caps its own address space, runs
math-verify (and the code sandbox) in its main thread, and answers one reply per item so the
parent can hold every item to its own deadline and kill the worker when one is missed.

Protocol: frames of `<4-byte little-endian length><pickle>`. Worker -> parent: `("ready", pid)`
once, then `("result", index, dict)` per item. Parent -> worker: `("batch", [(index, item), ...])`
or `("quit",)`. An item is a dict with `kind` = `judge` (gold, pred, pred_is_text, timeout_s) or
`code` (code, timeout_s, memory_mb, convention, isolation: never a gold); `minerva_equiv` (pred, gold) and
`study_grpo_judge` (completion, answer, gold) for the study's scoring rules (`rewards.rules`).
"""

from __future__ import annotations

import os
import pickle
import resource
import struct
import sys

HEADER = struct.Struct("<I")


def read_frame(stream) -> object | None:
    header = stream.read(HEADER.size)
    if len(header) < HEADER.size:
        return None
    (size,) = HEADER.unpack(header)
    payload = stream.read(size)
    if len(payload) < size:
        return None
    return pickle.loads(payload)


def encode_frame(message: object) -> bytes:
    payload = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return HEADER.pack(len(payload)) + payload


def handle(item: dict) -> dict:
    if item["kind"] == "minerva_equiv":  # rule=study: only in checkers whose path starts with antlr4 4.11
        from rewards.minerva import is_equiv

        return {"status": "correct" if is_equiv(item["pred"], item["gold"]) else "wrong"}
    if item["kind"] == "study_grpo_judge":
        from rewards.rules import study_grpo_judge

        return study_grpo_judge(item["completion"], item["answer"], item["gold"])
    if item["kind"] == "code":
        from rewards.sandbox import run_code

        result = run_code(item["code"], timeout_s=item["timeout_s"], memory_mb=item["memory_mb"],
                          convention=item.get("convention", "lab"), isolation=item.get("isolation"))
        return {"status": result.status, "answer": result.answer, "detail": result.detail,
                "isolation": result.isolation}
    from rewards.equivalence import judge

    return judge(item["gold"], item["pred"], item["pred_is_text"], timeout_s=item["timeout_s"])


def main() -> None:
    memory_mb = int(os.environ.get("MOELAB_REWARD_WORKER_MEMORY_MB", "3072"))
    if memory_mb > 0:
        resource.setrlimit(resource.RLIMIT_AS, (memory_mb << 20, memory_mb << 20))
    requests = sys.stdin.buffer
    replies = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # stray prints from libraries must not corrupt the reply stream
    from rewards.equivalence import warm_up
    from rewards.numeric_guard import install as skip_simplify_where_numbers_differ

    skip_simplify_where_numbers_differ()  # same verdicts, without simplify on unequal numbers
    warm_up()  # pay math-verify's imports (and sympy's lazy ones) before saying ready

    replies.write(encode_frame(("ready", os.getpid())))
    replies.flush()
    while True:
        message = read_frame(requests)
        if message is None or message[0] == "quit":
            return
        for index, item in message[1]:
            try:
                result = handle(item)
            except MemoryError:
                result = {"status": "error", "detail": "checker ran out of memory"}
            except Exception as err:  # noqa: BLE001 - report, keep serving
                result = {"status": "error", "detail": f"checker failed: {type(err).__name__}: {err}"[:300]}
            replies.write(encode_frame(("result", index, result)))
            replies.flush()


if __name__ == "__main__":
    main()
