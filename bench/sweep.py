"""Samples/s of the lab's sweep path vs the study's per-problem loop, on one vLLM engine, same work.

The study (a fork of Large Language Monkeys) calls `llm.generate([prompt] * 64, params)` once per
problem: every call drains to its longest completion before the next problem starts, so the
batch shrinks to a few stragglers at the end of each call. The lab's sweep path
(`inference.generation.backends.VLLMBackend`, what `moelab sweep` runs) puts a whole chunk of problems x
samples into ONE `generate` call with per-sample seeds and logprobs, so continuous batching keeps
the batch full. Same engine, same prompts, same sampling (T, top_p, max tokens, the study's stop
strings `Question:` / `Q:`), same number of samples.

Models: a toy family member (trained: its completions end at EOS or a stop string, so lengths
vary), and a random-weight d512-E8-k2 with fewer layers (`materialize_random`). Random weights
never write a stop string, so for the d512 model both paths get the same EOS logit bias, which
gives the geometric spread of completion lengths that real sweeps have (`--eos-bias 0` disables).

Prefill. Every path also reports the engine's own counters (`inference.generation.backends.engine_counters`):
engine steps, tokens scheduled, prompt tokens and the prompt tokens it computed itself rather than
read from its prefix cache, and the lab path's prefix-cache hit rate. They are the engine-side
proxy for GPU cost: on a GPU with the study's ~1,000-token few-shot prompts x 128 samples the
prompt is most of the compute, while on this CPU vLLM's per-token overhead dominates (the timings).
The toy's 1-shot case (one train example drawn per problem, as the study's GSM8K generator did;
83-160 tokens) spans several of the lab's 32-token CPU blocks; it also runs the lab path on an
engine with vLLM-CPU's default 128-token blocks (the lab's engine before `backend.block_size`),
whose CPU time and samples it compares. Each timed run starts from an empty prefix cache.

    .venv/bin/python bench/sweep.py                 # toy 0- and 1-shot: 64 x 64 samples; d512 (2 layers): 16 x 64
    .venv/bin/python bench/sweep.py --models toy --repeats 3 --out docs/results/bench-sweep-prefill.txt
    .venv/bin/python bench/sweep.py --d512-problems 64 --d512-top-p 0.95   # the full study setting at d512
    .venv/bin/python bench/sweep.py --problems 16 --samples 32 --models toy   # a quick look

Last line: `ratio: <lab/study loop, d512>` (or the toy ratio when only the toy model runs).

The overhead breakdown of a whole `moelab sweep` is its own bench, `bench/sweep_breakdown.py`;
`bench/sweep.py --breakdown ...` runs it (the name its committed results were recorded under).
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

if __name__ == "__main__" and "--breakdown" in sys.argv[1:]:  # the breakdown bench, by its recorded name
    sys.argv.remove("--breakdown")
    sys.argv[0] = str(Path(__file__).with_name("sweep_breakdown.py"))
    import runpy

    runpy.run_path(sys.argv[0], run_name="__main__")
    sys.exit(0)
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", "all")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from inference.generation.backends import (  # noqa: E402
    GenerationRequest,
    SamplingSettings,
    VLLMBackend,
    engine_arguments,
    engine_counters,
)
from inference.generation.store import sample_seed  # noqa: E402
from tasks.prompts import STUDY_STOP_STRINGS, format_prompt, shots_per_problem  # noqa: E402

CPU_DEFAULT_BLOCK_SIZE = 128  # vLLM-CPU's own block size: the lab's engines used it before backend.block_size
LINES: list[str] = []


def report(line: str) -> None:
    """Print a result line and keep it for --out."""
    print(line, flush=True)
    LINES.append(line)


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


def prompts_for(kind: str, num_problems: int, num_shots: int = 0) -> list[str]:
    """Test prompts; `num_shots` train examples drawn per problem (`tasks.prompts.shots_per_problem`, seed 0)."""
    from tasks.datasets import load_problems

    options = {"num_problems": max(num_problems, 64)} if kind == "toy" else {}
    name = "toy" if kind == "toy" else "gsm8k"
    rows = load_problems(name, split="test", limit=num_problems, shuffle_seed=None if kind == "toy" else 0, **options)
    shots = [[] for _ in rows]
    if num_shots:
        shots = shots_per_problem(load_problems(name, split="train", **options), num_shots, 0, len(rows))
    return [format_prompt(row["question"], shots=s) for row, s in zip(rows, shots)]


def lab_path(llm, prompts: list[str], samples: int, sampling: SamplingSettings, extra: dict) -> list[tuple]:
    backend = VLLMBackend("", llm=llm, sampling_kwargs=extra)
    requests = [GenerationRequest(p, sample_seed(0, p, i), sampling, key=f"{j}-{i}")
                for j, p in enumerate(prompts) for i in range(samples)]
    return [(r.completion, r.num_tokens) for r in backend.generate(requests)]


def study_loop(llm, prompts: list[str], samples: int, sampling: SamplingSettings, extra: dict) -> list[tuple]:
    from vllm import SamplingParams

    params = SamplingParams(temperature=sampling.temperature, top_p=sampling.top_p,
                            max_tokens=sampling.max_new_tokens, stop=list(sampling.stop), **extra)
    samples_out = []
    for prompt in prompts:  # one generate call per problem, [prompt] * samples, as the study's loop
        outputs = llm.generate([prompt] * samples, params, use_tqdm=False)
        samples_out += [(c.text, len(c.token_ids)) for o in outputs for c in o.outputs]
    return samples_out


def timed(llm, path, prompts: list[str], args: argparse.Namespace, sampling: SamplingSettings,
          extra: dict) -> dict:
    """One run of a path from an empty prefix cache: wall and CPU seconds, samples, engine counter deltas."""
    llm.reset_prefix_cache()  # the paths share prompts: neither may start from the other's cached blocks
    before = engine_counters(llm)
    start, cpu = time.perf_counter(), time.process_time()
    samples = path(llm, prompts, args.samples, sampling, extra)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    after = engine_counters(llm)
    return {"wall": wall, "cpu": cpu, "samples": samples, **{k: after[k] - before[k] for k in after}}


def build_engine(model_dir: str, args: argparse.Namespace, block_size: int | None):
    """An engine as `moelab sweep` builds it on this machine (`engine_arguments`), counters on."""
    from vllm import LLM

    return LLM(model=model_dir, dtype="float32", enable_prefix_caching=True, max_num_seqs=args.max_num_seqs,
               seed=0, disable_log_stats=False, **engine_arguments(enforce_eager=True, block_size=block_size))


def path_line(title: str, runs: list[dict], work: int) -> str:
    wall, cpu = statistics.median(r["wall"] for r in runs), statistics.median(r["cpu"] for r in runs)
    r = runs[-1]
    generated = sum(n for _, n in r["samples"])
    return (f"  {title}: {work / wall:8.1f} samples/s ({wall:6.1f} s wall, {cpu:6.1f} s CPU, medians of {len(runs)}; "
            f"{generated / work:5.1f} tokens/sample; {r['engine_steps']:5.0f} engine steps, "
            f"{r['scheduled_tokens']:8.0f} tokens scheduled, {r['prompt_tokens']:7.0f} prompt tokens, "
            f"{r['computed_prompt_tokens']:7.0f} computed)")


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
        report("  step model: the two paths do not fit time = a*steps + b*tokens (noisy run?)")
        return
    report(f"  step model: {1000 * per_step:.2f} ms per engine step + {1e6 * per_token:.1f} us per scheduled token; "
          f"per-token work is {per_token * study_tokens / study:.0%} of the study loop's time, so no scheduling "
          f"of this work beats {study / (per_token * lab_tokens):.2f}x here")


def bench_model(label: str, model_dir: str, prompts: list[str], args: argparse.Namespace, extra: dict,
                compare_default_blocks: bool = False) -> float:
    sampling = SamplingSettings(temperature=args.temperature, top_p=args.top_p,
                                max_new_tokens=args.max_new_tokens, stop=tuple(STUDY_STOP_STRINGS))
    # In one process, so the timed runs interleave and share the machine's load alike. vLLM's counters are
    # process-wide and only the newest engine's reach them, so the lab's engine is built last.
    default_blocks = build_engine(model_dir, args, CPU_DEFAULT_BLOCK_SIZE) if compare_default_blocks else None
    engine = build_engine(model_dir, args, None)
    engines = {"lab": engine, "study": engine}  # the same engine: only the scheduling of the work differs
    if default_blocks is not None:
        engines["lab-128"] = default_blocks
    block_size = engines["lab"].llm_engine.vllm_config.cache_config.block_size
    paths = {"lab": lab_path, "study": study_loop, "lab-128": lab_path}
    for name, llm in engines.items():
        # warm-up: the first logprobs request in a process pays a one-time cost; keep it out of the timings
        paths[name](llm, prompts[:2], 2, sampling, extra)
    runs: dict[str, list[dict]] = {name: [] for name in engines}
    for _ in range(args.repeats):  # alternate, so load from other jobs hits every path alike
        for name, llm in engines.items():
            runs[name].append(timed(llm, paths[name], prompts, args, sampling, extra))
    del engines, engine, llm, default_blocks
    gc.collect()
    if compare_default_blocks:  # the default-block engine's counters: one more (untimed) run on a newest engine
        counted = build_engine(model_dir, args, CPU_DEFAULT_BLOCK_SIZE)
        run = timed(counted, lab_path, prompts, args, sampling, extra)
        runs["lab-128"][-1].update({k: v for k, v in run.items() if k not in ("wall", "cpu", "samples")})
        del counted
        gc.collect()
    work = len(prompts) * args.samples
    per_prompt = runs["lab"][-1]["prompt_tokens"] / work
    report(f"{label}: {len(prompts)} problems x {args.samples} samples, T={args.temperature} top_p={args.top_p}, "
           f"max {args.max_new_tokens} tokens, stop {STUDY_STOP_STRINGS}"
           f"{', EOS bias ' + str(args.eos_bias) if extra else ''}; {per_prompt:.0f} prompt tokens per sample on "
           f"average, KV block size {block_size}")
    report(path_line("lab sweep path ", runs["lab"], work))
    report(path_line("study loop     ", runs["study"], work))
    lab, study = runs["lab"][-1], runs["study"][-1]
    report(f"  computed prompt tokens: lab path {lab['computed_prompt_tokens']:.0f} = "
           f"{lab['computed_prompt_tokens'] / study['prompt_tokens']:.1%} of the study loop's "
           f"{study['prompt_tokens']:.0f} prompt tokens (the study loop on this engine computes "
           f"{study['computed_prompt_tokens'] / study['prompt_tokens']:.1%}: vLLM v1 shares blocks within a step too)")
    report(f"  prefix-cache hit rate (lab path): {lab['prefix_cache_hits'] / max(lab['prefix_cache_queries'], 1):.0%}"
           f"  (engine counters: the engine-side proxy for GPU cost, not this CPU's time)")
    if compare_default_blocks:
        before = runs["lab-128"]
        report(path_line(f"lab, block {CPU_DEFAULT_BLOCK_SIZE}", before, work) + "  <- vLLM-CPU's default blocks")
        report(f"  prefix-cache hit rate (lab path, block {CPU_DEFAULT_BLOCK_SIZE}): "
               f"{before[-1]['prefix_cache_hits'] / max(before[-1]['prefix_cache_queries'], 1):.0%}")
        cpu_new = statistics.median(r["cpu"] for r in runs["lab"])
        cpu_old = statistics.median(r["cpu"] for r in before)
        same = sum(a == b for a, b in zip(lab["samples"], before[-1]["samples"]))
        report(f"  lab path CPU time, block {block_size} vs {CPU_DEFAULT_BLOCK_SIZE}: {cpu_new:.1f} s vs "
               f"{cpu_old:.1f} s ({cpu_new / cpu_old:.2f}x, medians); samples (text, tokens) identical: {same}/{work}")
    study_s = statistics.median(r["wall"] for r in runs["study"])
    lab_s = statistics.median(r["wall"] for r in runs["lab"])
    print_step_model(lab_s, study_s, {name: (0, runs[name][-1]["engine_steps"], runs[name][-1]["scheduled_tokens"])
                                      for name in ("lab", "study")})
    report(f"  ratio {label}: {study_s / lab_s:.2f}")
    return study_s / lab_s


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
    parser.add_argument("--toy-shots", default="0,1",
                        help="toy cases: comma list of shots per prompt (one train example drawn per problem); "
                             "the 1-shot case also runs the lab path on vLLM-CPU's default 128-token blocks")
    parser.add_argument("--out", default=None, help="also write the report lines to this file")
    args = parser.parse_args()

    ratios = {}
    with tempfile.TemporaryDirectory() as tmp:
        work_dir = Path(args.work_dir or tmp)
        for kind in args.models.split(","):
            if kind == "toy":
                model_dir, _ = toy_model(args.toy_model)
                for shots in (int(k) for k in args.toy_shots.split(",")):
                    ratios["toy"] = bench_model(f"toy ({Path(model_dir).name}) {shots}-shot", model_dir,
                                                prompts_for("toy", args.problems, shots), args, {},
                                                compare_default_blocks=shots > 0)
            elif kind == "d512":
                model_dir = d512_model(args.d512_layers, work_dir)
                extra = {"logit_bias": {2: args.eos_bias}} if args.eos_bias else {}
                d512_args = argparse.Namespace(**{**vars(args), "max_new_tokens": args.d512_max_new_tokens,
                                                  "top_p": args.d512_top_p})
                ratios["d512"] = bench_model(f"d512-E8-k2 random, {args.d512_layers} layers", model_dir,
                                             prompts_for("gsm8k", args.d512_problems), d512_args, extra)
            else:
                raise SystemExit(f"unknown model kind {kind!r}: use toy, d512")
    report(f"ratio: {ratios.get('d512', ratios.get('toy', float('nan'))):.2f}")
    if args.out:
        from core.files import atomic_write
        from core.provenance import provenance_line

        header = provenance_line() + "\n"
        atomic_write(args.out, lambda temp: temp.write_text(header + "\n".join(LINES) + "\n"))


if __name__ == "__main__":
    main()
