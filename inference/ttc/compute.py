"""The compute axis: generation FLOPs per problem. One definition, used by the metrics, the plots and `moelab deficit`.

    FLOPs(k) = 2 x N_fwd x k x (prompt tokens + generated tokens per sample)
    N_fwd    = active parameters - input embedding (V x D; 0 when the embedding is tied to the lm_head)

Why this and not "2 x active parameters x generated tokens" (the lab's first definition, removed):
- 2 N per token is the forward-pass cost of Kaplan et al. 2020 (eq. 2.2, C_forward ~ 2N), whose N
  excludes the embedding: looking a token up in the input embedding is a gather, no multiply-adds.
  The index counts it as active (docs/study.md, "Parameter counts"), and at d512-k2 it is 30% of the
  active parameters (50,987,008 of 169,165,312), so counting it overstated dense and sparse models by
  different factors. The untied lm_head is a real V x D matmul per token and stays in.
- A sample's cost includes reading its prompt: every token the model processes costs 2 N_fwd,
  prompt or generated. The prompt is counted once per sample, the cost of k independent samples;
  an engine that shares the prompt's prefill between samples (vLLM prefix caching) spends less, so
  for few-shot prompts this is an upper bound of what it spent, the same bound for every model.
- Attention's context term (2 n_layer n_ctx d per token, Kaplan eq. 2.2) is left out as Kaplan
  does: at the lab's contexts (<= 2k tokens) it is a few percent of N_fwd for every released size.
The token counts come from the samples (`prompt_tokens`, `num_tokens` columns of the scored table);
a model the checkpoint index does not know, or samples without prompt token counts, get NaN, never
a guess.
"""

from __future__ import annotations

import math
from functools import lru_cache

FLOPS_LABEL = "generation FLOPs per problem (2 x non-embedding active params x (prompt + generated) tokens)"


def forward_params_of(active_params: float, vocab_size: float, d_model: float, tied_embeddings: bool = False) -> float:
    """Parameters a token's forward pass multiplies by: active minus the input embedding lookup."""
    return float(active_params) - (0.0 if tied_embeddings else float(vocab_size) * float(d_model))


@lru_cache(maxsize=256)
def forward_params(model: str) -> float:
    """`forward_params_of` for an index name or local checkpoint; NaN when the index cannot size it."""
    try:
        from checkpoints_index.index import resolve

        info = resolve(model)
    except Exception:  # noqa: BLE001 - compute axes are optional: an unknown model gets NaN, never an error
        return math.nan
    return forward_params_of(info.active_params, info.vocab_size, info.d_model, info.tied_embeddings)


def generation_flops(params: float, k: int, prompt_tokens: float, generated_tokens: float) -> float:
    """FLOPs of k samples of one problem: 2 x params x k x (prompt + generated tokens per sample).

    >>> generation_flops(1e6, 4, 100, 50)
    1200000000.0
    """
    return 2.0 * params * k * (prompt_tokens + generated_tokens)
