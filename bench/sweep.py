"""Samples/s of the lab's sweep path vs the study's per-problem loop, on one vLLM engine, same work.

The study (a fork of Large Language Monkeys) calls `llm.generate([prompt] * 64, params)` once per
problem: every call drains to its longest completion before the next problem starts, so the
batch shrinks to a few stragglers at the end of each call. The lab's sweep path
(`inference.backends.VLLMBackend`, what `moelab sweep` runs) puts a whole chunk of problems x
samples into ONE `generate` call with per-sample seeds and logprobs, so continuous batching keeps
the batch full. Same engine, same prompts, same sampling (T, top_p, max tokens, the study's stop
strings `Question:` / `Q:`), same number of samples.

Models: a toy family member (trained: its completions end at EOS or a stop string, so lengths
vary), and a random-weight d512-E8-k2 with fewer layers (`materialize_random`). Random weights
never write a stop string, so for the d512 model both paths get the same EOS logit bias, which
gives the geometric spread of completion lengths that real sweeps have (`--eos-bias 0` disables).

    .venv/bin/python bench/sweep.py                 # toy: 64 x 64 samples; d512 (2 layers): 16 x 64
    .venv/bin/python bench/sweep.py --d512-problems 64 --d512-top-p 0.95   # the full study setting at d512
    .venv/bin/python bench/sweep.py --problems 16 --samples 32 --models toy   # a quick look

Last line: `ratio: <lab/study loop, d512>` (or the toy ratio when only the toy model runs).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", "all")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from inference.backends import GenerationRequest, SamplingSettings, VLLMBackend, cpu_engine_defaults  # noqa: E402
from inference.store import sample_seed  # noqa: E402
from tasks.prompts import STUDY_STOP_STRINGS, format_prompt  # noqa: E402


def toy_model(name: str | None) -> tuple[str, list[str]]:
    from checkpoints_index.index import all_checkpoints
    from checkpoints_index.loading import model_source

    if name is None:
        toys = sorted(info.name for info in all_checkpoints() if info.domain == "toy")
        if not toys:
            raise SystemExit("no toy family member found under checkpoints_index/toy/models/; pass --toy-model DIR")
        name = toys[0]
    return model_source(name), [name]


def d512_model(layers: int, work_dir: Path) -> str:
    from checkpoints_index.loading import materialize_random

    out = work_dir / f"d512-E8-k2-L{layers}"
    if not (out / "config.json").is_file():
        materialize_random("d512-E8-k2", out, layers=layers, dtype="float32")
    return str(out)


def prompts_for(kind: str, num_problems: int) -> list[str]:
    from tasks.datasets import load_problems

    if kind == "toy":
        rows = load_problems("toy", split="test", limit=num_problems, num_problems=max(num_problems, 64))
    else:
        rows = load_problems("gsm8k", split="test", limit=num_problems, shuffle_seed=0)
    return [format_prompt(row["question"]) for row in rows]


def engine_counters(llm) -> tuple[float, float]:
    """(engine steps, tokens scheduled) so far, from vLLM's own metrics (`disable_log_stats=False`)."""
    steps = tokens = 0.0
    for metric in llm.get_metrics():
        if metric.name == "vllm:iteration_tokens_total":
            steps += metric.count
            tokens += metric.sum
    return steps, tokens


def lab_path(llm, prompts: list[str], samples: int, sampling: SamplingSettings, extra: dict) -> tuple[float, int]:
    backend = VLLMBackend("", llm=llm, sampling_kwargs=extra)
    requests = [GenerationRequest(p, sample_seed(0, p, i), sampling, key=f"{j}-{i}")
                for j, p in enumerate(prompts) for i in range(samples)]
    start = time.perf_counter()
    results = backend.generate(requests)
    elapsed = time.perf_counter() - start
    return elapsed, sum(r.num_tokens for r in results)


def study_loop(llm, prompts: list[str], samples: int, sampling: SamplingSettings, extra: dict) -> tuple[float, int]:
    from vllm import SamplingParams

    params = SamplingParams(temperature=sampling.temperature, top_p=sampling.top_p,
                            max_tokens=sampling.max_new_tokens, stop=list(sampling.stop), **extra)
    tokens = 0
    start = time.perf_counter()
    for prompt in prompts:  # one generate call per problem, [prompt] * samples, as the study's loop
        outputs = llm.generate([prompt] * samples, params, use_tqdm=False)
        tokens += sum(len(c.token_ids) for o in outputs for c in o.outputs)
    return time.perf_counter() - start, tokens


def print_step_model(lab: float, study: float, engine: dict) -> None:
    """Why the ratio is what it is: fit time = a * steps + b * scheduled tokens to the two paths.

    Batching the whole chunk can only remove per-step cost (a): the study loop runs many small steps,
    the lab few full ones. Per-token cost (b) is the same work in both. So study / (b * lab tokens) is
    the most any scheduling of this work could gain on this engine and machine. On a GPU a step costs
    about the same for 64 or 256 sequences (a dominates); on a CPU the cost grows with every token.
    """
    (_, lab_steps, lab_tokens), (_, study_steps, study_tokens) = engine["lab"], engine["study"]
    det = lab_steps * study_tokens - study_steps * lab_tokens
    if not det:
        return
    per_step = (lab * study_tokens - study * lab_tokens) / det
    per_token = (lab_steps * study - study_steps * lab) / det
    if per_step <= 0 or per_token <= 0:
        print("  step model: the two paths do not fit time = a*steps + b*tokens (noisy run?)")
        return
    print(f"  step model: {1000 * per_step:.2f} ms per engine step + {1e6 * per_token:.1f} us per scheduled token; "
          f"per-token work is {per_token * study_tokens / study:.0%} of the study loop's time, so no scheduling "
          f"of this work beats {study / (per_token * lab_tokens):.2f}x here")


def bench_model(label: str, model_dir: str, prompts: list[str], args: argparse.Namespace, extra: dict) -> float:
    from vllm import LLM

    sampling = SamplingSettings(temperature=args.temperature, top_p=args.top_p,
                                max_new_tokens=args.max_new_tokens, stop=tuple(STUDY_STOP_STRINGS))
    llm = LLM(model=model_dir, dtype="float32", enforce_eager=True, enable_prefix_caching=True,
              max_num_seqs=args.max_num_seqs, seed=0, disable_log_stats=False, **cpu_engine_defaults())
    # warm-up: the first logprobs request in a process pays a one-time cost; keep it out of both timings
    lab_path(llm, prompts[:2], 2, sampling, extra)
    study_loop(llm, prompts[:1], 2, sampling, extra)
    lab_s, study_s, engine = [], [], {}
    for _ in range(args.repeats):  # alternate, so load from other jobs hits both paths alike
        for name, path, times in (("lab", lab_path, lab_s), ("study", study_loop, study_s)):
            before = engine_counters(llm)
            elapsed, tokens = path(llm, prompts, args.samples, sampling, extra)
            after = engine_counters(llm)
            times.append(elapsed)
            engine[name] = (tokens, after[0] - before[0], after[1] - before[1])
    work = len(prompts) * args.samples
    lab, study = statistics.median(lab_s), statistics.median(study_s)
    print(f"{label}: {len(prompts)} problems x {args.samples} samples, T={args.temperature} top_p={args.top_p}, "
          f"max {args.max_new_tokens} tokens, stop {STUDY_STOP_STRINGS}"
          f"{', EOS bias ' + str(args.eos_bias) if extra else ''}")
    for name, title, seconds in (("lab", "lab sweep path ", lab), ("study", "study loop     ", study)):
        generated, steps, scheduled = engine[name]
        print(f"  {title}: {work / seconds:8.1f} samples/s  ({seconds:6.1f} s median of {args.repeats}, "
              f"{generated / work:5.1f} tokens/sample; {steps:5.0f} engine steps, {scheduled:8.0f} tokens scheduled, "
              f"{1000 * seconds / steps:6.1f} ms/step)")
    print_step_model(lab, study, engine)
    print(f"  ratio {label}: {study / lab:.2f}", flush=True)
    del llm
    import gc

    gc.collect()
    return study / lab


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="toy,d512", help="comma list of toy, d512")
    parser.add_argument("--problems", type=int, default=64)
    parser.add_argument("--samples", type=int, default=64, help="samples per problem (the study's batch)")
    parser.add_argument("--max-new-tokens", type=int, default=96, help="toy completion limit (solutions < 60)")
    parser.add_argument("--temperature", type=float, default=0.8)
    parser.add_argument("--top-p", type=float, default=0.95)
    parser.add_argument("--repeats", type=int, default=1, help="timed runs of each path (median reported)")
    parser.add_argument("--max-num-seqs", type=int, default=256, help="engine batch limit (vLLM-CPU's default)")
    parser.add_argument("--toy-model", default=None, help="toy member name or directory (default: first found)")
    parser.add_argument("--d512-layers", type=int, default=2)
    parser.add_argument("--d512-problems", type=int, default=16,
                        help="problems for d512 (64 = the full 64 x 64; ~4x the default's time on 2 cores)")
    parser.add_argument("--d512-max-new-tokens", type=int, default=128)
    parser.add_argument("--d512-top-p", type=float, default=1.0,
                        help="vLLM-CPU sorts the whole 99,584-token vocabulary per sample per step for top-p "
                             "(~10 ms each here, the same in both paths): 1.0 keeps the d512 run to minutes")
    parser.add_argument("--eos-bias", type=float, default=8.0,
                        help="EOS logit bias for the random d512 model (~3%% EOS per token: mean length ~30, "
                             "a long tail to the limit); 0 = none")
    parser.add_argument("--work-dir", default=None, help="where the d512 stand-in is written (default: temp dir)")
    args = parser.parse_args()

    ratios = {}
    with tempfile.TemporaryDirectory() as tmp:
        work_dir = Path(args.work_dir or tmp)
        for kind in args.models.split(","):
            if kind == "toy":
                model_dir, _ = toy_model(args.toy_model)
                ratios["toy"] = bench_model(f"toy ({Path(model_dir).name})", model_dir,
                                            prompts_for("toy", args.problems), args, {})
            elif kind == "d512":
                model_dir = d512_model(args.d512_layers, work_dir)
                extra = {"logit_bias": {2: args.eos_bias}} if args.eos_bias else {}
                d512_args = argparse.Namespace(**{**vars(args), "max_new_tokens": args.d512_max_new_tokens,
                                                  "top_p": args.d512_top_p})
                ratios["d512"] = bench_model(f"d512-E8-k2 random, {args.d512_layers} layers", model_dir,
                                             prompts_for("gsm8k", args.d512_problems), d512_args, extra)
            else:
                raise SystemExit(f"unknown model kind {kind!r}: use toy, d512")
    print(f"ratio: {ratios.get('d512', ratios.get('toy', float('nan'))):.2f}")


if __name__ == "__main__":
    main()
