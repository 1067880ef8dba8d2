"""Answer tokens/s of the task loss: vLLM prompt log-probabilities vs one batched HF forward pass.

Both scorers are `moelab taskloss`'s own (`inference.instruments.taskloss.VLLMTaskLoss`, `HFTaskLoss`), on the same
examples: the toy task's 0-shot set on a toy member, and the study's GSM8K 4-shot set on a random-init
2-layer d512-E8-k2 (`materialize_random`; byte-level stand-in tokenizer, so ~2,500 tokens per example).
Timed after a warm-up call (vLLM's first prompt-logprobs request pays a one-time cost); medians of
`--repeats`. Tokens/s counts every token of prompt + answer (both paths process them all). The two
backends' bits/token are printed too: they must agree (tests/test_taskloss.py holds 1e-3).

    .venv/bin/python bench/taskloss.py --out docs/results/bench-taskloss.txt

Last line: `ratio: <vLLM tokens/s / HF tokens/s, d512>`.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.platform import prepare_vllm_environment  # noqa: E402

prepare_vllm_environment()


def _time(scorer, examples, repeats: int) -> tuple[float, list]:
    scorer.score(examples[:2])  # warm-up
    times, losses = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        losses = scorer.score(examples)
        times.append(time.perf_counter() - start)
    return statistics.median(times), losses


def bench(label: str, source: str, examples: list, repeats: int, batch_size: int) -> tuple[str, float]:
    from inference.instruments.taskloss import HFTaskLoss, VLLMTaskLoss, summarize

    rates, bits = {}, {}
    for name in ("vllm", "hf"):
        scorer = VLLMTaskLoss(source) if name == "vllm" else HFTaskLoss(source, batch_size=batch_size)
        seconds, losses = _time(scorer, examples, repeats)
        tokens = sum(x.prompt_tokens + x.answer_tokens for x in losses)
        rates[name], bits[name] = tokens / seconds, summarize(label, label, losses)["bits_per_token"]
        scorer.close()
    line = (f"{label}: {len(examples)} examples, vLLM {rates['vllm']:.0f} tok/s, HF {rates['hf']:.0f} tok/s "
            f"(batch {batch_size}), vLLM/HF {rates['vllm'] / rates['hf']:.2f}; bits/token vLLM {bits['vllm']:.5f} "
            f"HF {bits['hf']:.5f}")
    return line, rates["vllm"] / rates["hf"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--toy-examples", type=int, default=256)
    parser.add_argument("--d512-examples", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--out", help="also write the report here")
    args = parser.parse_args()

    from checkpoints_index.loading import materialize_random, model_source
    from tasks.taskloss_sets import gsm8k_set, toy_set

    lines = []
    line, _ = bench("toy-d64-E8-k2 / toy", model_source("toy-d64-E8-k2"), toy_set()[: args.toy_examples],
                    args.repeats, args.batch_size)
    lines.append(line)
    print(line, flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        d512 = str(materialize_random("d512-E8-k2", Path(tmp) / "d512", layers=2, dtype="float32"))
        examples = [e for e in gsm8k_set() if len((e["prompt"] + e["answer"]).encode()) < 4000][: args.d512_examples]
        line, ratio = bench("d512-E8-k2 (2 layers, random) / gsm8k-4shot", d512, examples, args.repeats,
                            args.batch_size)
    lines.append(line)
    print(line, flush=True)
    lines.append(f"ratio: {ratio:.2f}")
    print(lines[-1])
    if args.out:
        from core.provenance import provenance_line

        Path(args.out).write_text("\n".join([provenance_line(), *lines]) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
