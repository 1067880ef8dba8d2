"""Weight sync into a colocated vLLM engine vs the number of experts: the first sync against the new paths.

    python bench/weight_sync.py                                  # E = 8, 32, 128 at d512, 2 layers, bf16
    python bench/weight_sync.py --series idle-2026-12-09 --out docs/results/bench-weight-sync.jsonl

For each E, a 2-layer random-init stand-in of d512-E{E}-k2 (`moelab.rehearse_standins`, cached under
`outputs/rehearse/models/`) is loaded as the policy (transformers, `--dtype`: bf16 as in the d512 paper
recipe) and as an in-process vLLM engine (same dtype, eager), as GRPO's colocated mode has them; then `rl.weight_sync.
sync_weights_into_engine` pushes the policy into the engine by each `--paths` entry:
`per-expert` (the lab's first sync, the baseline: 3E tensors per layer, each layer put back into
checkpoint format in freshly allocated memory, repacked into new tensors and copied back), `stacked`
(two fused tensors per layer through vLLM's `load_weights`) and `packed` (vLLM-CPU's expert packing
straight from transformers' tensors into the engine's; what `auto` picks on CPU). One untimed sync per
path first, then `--repeats` rounds that time every path in turn (so a change in the machine's load
hits all paths alike); medians per path, with the phases (`restore` to checkpoint format, `load`,
`pack`, `process` = vLLM's repacking, `keep` = copies back into the engine's tensors).

Counted once per path (outside the timing): tensors handed to vLLM's `load_weights`, calls of the
expert layers' `weight_loader`, tensor copies (`aten.copy_`) and the bytes they move, the policy
parameters walked (= the parameter gathers under DeepSpeed ZeRO-3, where TRL's iterator gathers one
parameter at a time: the same count for every E, since transformers keeps each layer's experts in two
fused tensors), the peak RSS growth during the sync, and a fingerprint of the engine's weights after
it (every path must leave the same). Each E runs in its own process. Last line: `ratio: N`, the
baseline's median over the default path's (`auto`: `packed` on vLLM-CPU) at the largest E. `--out`
appends one JSON line per E and writes the printed report, with a provenance line, beside it (`.txt`).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

LAB = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(LAB))
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")

BASELINE = "per-expert"
PHASES = ("restore", "load", "pack", "process", "keep")


def rss_mib(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def reset_peak_rss() -> None:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # Linux: VmHWM := VmRSS
    except OSError:
        pass


def fingerprint(model: Any) -> dict[str, float]:
    """Sum of each engine tensor (float64): equal fingerprints after two syncs = same weights loaded."""
    import torch

    with torch.no_grad():  # in chunks: no float64 copy of a whole expert tensor
        return {name: sum(float(c.double().sum()) for c in t.detach().reshape(-1).split(1 << 22))
                for name, t in model.state_dict().items() if t.numel()}


def count_sync(llm: Any, policy: Any, path: str) -> dict[str, Any]:
    """One sync under counters: load_weights tensors, expert weight_loader calls, copies, peak RSS."""
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode
    from vllm.model_executor.layers.fused_moe.routed_experts import RoutedExperts

    from rl.weight_sync import sync_weights_into_engine, vllm_model

    counts = {"load_weights_tensors": 0, "expert_weight_loader_calls": 0, "copies": 0, "copy_bytes": 0,
              "policy_parameters": 0}

    class Copies(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func is torch.ops.aten.copy_.default:
                counts["copies"] += 1
                counts["copy_bytes"] += args[0].numel() * args[0].element_size()
            return func(*args, **(kwargs or {}))

    model = vllm_model(llm)
    # every expert weight_loader call that loads a weight ends here (the loaders are bound at start-up)
    load_weights, weight_loader = model.load_weights, RoutedExperts._load_model_weight_or_group_weight_scale

    def counted_load(weights):
        def each():
            for item in weights:
                counts["load_weights_tensors"] += 1
                yield item
        return load_weights(each())

    def counted_loader(self, *args, **kwargs):
        counts["expert_weight_loader_calls"] += 1
        return weight_loader(self, *args, **kwargs)

    def walk():
        for item in policy.named_parameters():
            counts["policy_parameters"] += 1
            yield item

    model.load_weights, RoutedExperts._load_model_weight_or_group_weight_scale = counted_load, counted_loader
    reset_peak_rss()
    before = rss_mib("VmRSS")
    try:
        with Copies():
            taken = sync_weights_into_engine(llm, walk(), path=path)
    finally:
        model.load_weights, RoutedExperts._load_model_weight_or_group_weight_scale = load_weights, weight_loader
    counts["peak_rss_growth_mib"] = round(rss_mib("VmHWM") - before, 1)
    counts["path_taken"] = taken
    return counts


def worker(experts: int, paths: list[str], repeats: int, dtype: str) -> dict[str, Any]:
    """Everything for one E, in this process; returns the record."""
    import torch
    from transformers import MixtralForCausalLM
    from vllm import LLM

    from moelab.rehearse_standins import standin_model
    from rl.weight_sync import sync_weights_into_engine, vllm_model

    folder = standin_model(f"d512-E{experts}-k2", 2, LAB / "outputs" / "rehearse" / "models")
    policy = MixtralForCausalLM.from_pretrained(folder, dtype=getattr(torch, dtype))
    params = sum(p.numel() for p in policy.parameters())
    expert_params = sum(p.numel() for n, p in policy.named_parameters() if ".mlp.experts." in n)
    start = time.perf_counter()
    llm = LLM(model=str(folder), dtype=dtype, enforce_eager=True, max_model_len=256, seed=0,
              max_num_batched_tokens=4096, logprobs_mode="processed_logprobs")
    engine_start = time.perf_counter() - start
    with torch.no_grad():  # a policy that differs from the checkpoint the engine loaded (in place: no copies)
        for p in policy.parameters():
            p.mul_(1.001)
    record: dict[str, Any] = {"experts": experts, "model": str(folder.relative_to(LAB)), "params": params,
                              "expert_params": expert_params, "engine_start_s": round(engine_start, 2),
                              "rss_after_start_mib": round(rss_mib("VmRSS")),
                              "peak_rss_at_start_mib": round(rss_mib("VmHWM")), "paths": {}}
    prints = {}
    for path in paths:  # untimed first sync per path (allocator, first touch), then the counted one
        sync_weights_into_engine(llm, policy.named_parameters(), path=path)
        record["paths"][path] = {"counts": count_sync(llm, policy, path)}
        prints[path] = fingerprint(vllm_model(llm))
    times: dict[str, list[dict[str, float]]] = {path: [] for path in paths}
    for _ in range(repeats):
        for path in paths:
            phases: dict[str, float] = {}
            start = time.perf_counter()
            sync_weights_into_engine(llm, policy.named_parameters(), path=path, timings=phases)
            times[path].append({"total": time.perf_counter() - start, **phases})
    for path in paths:
        rows = times[path]
        record["paths"][path].update(
            median_s=round(statistics.median(r["total"] for r in rows), 4),
            runs_s=[round(r["total"], 4) for r in rows],
            phases_median_s={k: round(statistics.median(r.get(k, 0.0) for r in rows), 4) for k in PHASES})
    reference = prints[paths[0]]
    record["same_weights_as_" + paths[0]] = {
        path: max(abs(prints[path][k] - v) / max(1.0, abs(v)) for k, v in reference.items()) < 1e-9 and
        prints[path].keys() == reference.keys() for path in paths}
    record["peak_rss_mib"] = round(rss_mib("VmHWM"))
    return record


def report(records: list[dict[str, Any]], paths: list[str]) -> list[str]:
    lines = ["Weight sync into a colocated vLLM engine, d512 2-layer random-init stand-ins (median seconds per sync)"]
    lines.append(f"{'E':>4s} {'params':>8s}" + "".join(f"{p:>12s}" for p in paths) + "   baseline / each")
    for rec in records:
        med = {p: rec["paths"][p]["median_s"] for p in paths}
        lines.append(f"{rec['experts']:4d} {rec['params'] / 1e6:7.0f}M" + "".join(f"{med[p]:12.3f}" for p in paths)
                     + "   " + ", ".join(f"{p} {med[BASELINE] / med[p]:.2f}x" for p in paths if p != BASELINE))
    lines.append("per sync: tensors into load_weights / expert weight_loader calls / copies (GiB copied) / "
                 "peak RSS growth MiB")
    for rec in records:
        for p in paths:
            c = rec["paths"][p]["counts"]
            ph = rec["paths"][p]["phases_median_s"]
            lines.append(f"  E{rec['experts']:<4d} {p:11s} {c['load_weights_tensors']:5d} / "
                         f"{c['expert_weight_loader_calls']:5d} / {c['copies']:5d} ({c['copy_bytes'] / 2**30:5.2f}) / "
                         f"{c['peak_rss_growth_mib']:7.1f}   phases: "
                         + " ".join(f"{k} {v:.3f}" for k, v in ph.items() if v))
        same = rec["same_weights_as_" + paths[0]]
        lines.append(f"  E{rec['experts']}: engine weights equal after every path: {all(same.values())}; policy "
                     f"parameters walked (ZeRO-3: gathers) {rec['paths'][paths[0]]['counts']['policy_parameters']}; "
                     f"RSS {rec['rss_after_start_mib']} MiB after start-up, peak {rec['peak_rss_mib']} MiB "
                     f"({rec['peak_rss_at_start_mib']} before the first sync); engine start {rec['engine_start_s']} s")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experts", default="8,32,128", help="comma list of E (d512-E{E}-k2 stand-ins, 2 layers)")
    parser.add_argument("--paths", default="per-expert,stacked,packed",
                        help=f"sync paths to time, the baseline ({BASELINE}) among them")
    parser.add_argument("--repeats", type=int, default=3, help="timed syncs per path")
    parser.add_argument("--dtype", default="bfloat16", help="policy and engine dtype (default: the d512 paper "
                        "recipe's; float32, the toy recipe's, doubles the bytes and the memory: 9.3 GiB at E=128)")
    parser.add_argument("--out", type=Path, help="append one JSON line per E (figures, provenance, --series)")
    parser.add_argument("--series", default="issue-28", help="label of the runs this one belongs to "
                        "(e.g. busy-2026-12-08, idle-2026-12-09)")
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    paths = args.paths.split(",")
    if BASELINE not in paths or len(paths) < 2:
        parser.error(f"--paths needs the baseline {BASELINE} and at least one other path")
    if args.worker is not None:
        print("RECORD " + json.dumps(worker(args.worker, paths, args.repeats, args.dtype)), flush=True)
        return 0
    from core.provenance import provenance, provenance_line

    record = provenance()
    load_at_start = round(os.getloadavg()[0], 2)
    records = []
    for experts in [int(e) for e in args.experts.split(",")]:
        command = [sys.executable, __file__, "--worker", str(experts), "--paths", args.paths,
                   "--repeats", str(args.repeats), "--dtype", args.dtype]
        done = subprocess.run(command, stdout=subprocess.PIPE, text=True)
        lines = [line for line in done.stdout.splitlines() if line.startswith("RECORD ")]
        if done.returncode != 0 or not lines:
            print(f"E={experts}: worker failed (exit {done.returncode})", file=sys.stderr)
            return 1
        records.append(json.loads(lines[-1].removeprefix("RECORD ")))
        print(f"E={experts}: " + ", ".join(f"{p} {records[-1]['paths'][p]['median_s']:.3f} s" for p in paths),
              flush=True)
    lines = report(records, paths)
    print("\n" + "\n".join(lines))
    largest = max(records, key=lambda r: r["experts"])
    chosen = "packed" if "packed" in paths else paths[-1]  # what `auto` takes on vLLM-CPU
    ratio = largest["paths"][BASELINE]["median_s"] / largest["paths"][chosen]["median_s"]
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        with args.out.open("a") as f:
            for rec in records:
                line = {"provenance": record, "series": args.series, "date": time.strftime("%Y-%m-%d"),
                        "load_1m_at_start": load_at_start, "dtype": args.dtype, "repeats": args.repeats, **rec,
                        "ratio_path": chosen,
                        "ratio": round(rec["paths"][BASELINE]["median_s"] / rec["paths"][chosen]["median_s"], 3)}
                f.write(json.dumps(line) + "\n")
        text = args.out.with_suffix(".txt") if args.out.suffix == ".jsonl" else Path(f"{args.out}.txt")
        header = provenance_line(record) + f" | series {args.series} | {args.dtype}"
        text.write_text(header + "\n" + "\n".join(lines) + "\n")
    print(f"ratio: {ratio:.2f}  (E={largest['experts']}: {BASELINE} / {chosen}, median seconds per sync)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
