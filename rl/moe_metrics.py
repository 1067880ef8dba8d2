"""Per-layer expert load and router entropy, read from the routers' own outputs.

Why hooks on `mlp.gate`: in transformers 5 the Mixtral router (`MixtralTopKRouter`) returns
`(router_logits, top_k_weights, top_k_index)`, so a forward hook sees exactly the routing the
experts then apply, whether or not `output_router_logits` is on (the study's GRPO ran without the
load-balancing loss, so router logits are usually not returned at all). Only forward passes that
build a graph are counted (`torch.is_grad_enabled()`): the tokens the update trains on, not
rollout generation or evaluation. Padding tokens of a micro-batch are counted too (the router
does not see the attention mask); with left-padded prompts they are a small, stable share.

Metrics (logged under `moe/`): for every layer, the token fraction per expert (written whole to
`expert_load.jsonl`), `max_over_mean` = max fraction x E (1.0 = perfectly balanced, E = one
expert takes everything), `router_entropy` = mean per-token entropy of the softmax router in nats
(ln E = uniform), and `dead_fraction` = share of experts that got no token in the window.
"""

from __future__ import annotations

import math
from typing import Any

import torch


def router_modules(model: Any) -> list[tuple[int, Any]]:
    """(layer index, router module) for every sparse-MoE layer of a Mixtral-style model."""
    found = []
    for name, module in model.named_modules():
        parts = name.split(".")
        if len(parts) >= 3 and parts[-1] == "gate" and parts[-2] in ("mlp", "block_sparse_moe") \
                and hasattr(module, "top_k") and hasattr(module, "num_experts"):
            layer = next((int(p) for p in reversed(parts) if p.isdigit()), len(found))
            found.append((layer, module))
    return sorted(found, key=lambda item: item[0])


class ExpertLoadMeter:
    """Accumulates expert token counts and router entropy per layer between `collect()` calls."""

    def __init__(self, model: Any):
        self.routers = router_modules(model)
        if not self.routers:
            raise ValueError(f"{type(model).__name__} has no Mixtral-style router modules (`mlp.gate`)")
        self.num_experts = int(self.routers[0][1].num_experts)
        self._counts = {layer: torch.zeros(self.num_experts, dtype=torch.float64) for layer, _ in self.routers}
        self._entropy_sum = {layer: 0.0 for layer, _ in self.routers}
        self._tokens = {layer: 0 for layer, _ in self.routers}
        for layer, module in self.routers:
            module.register_forward_hook(self._hook(layer))

    def _hook(self, layer: int):
        def record(module: Any, inputs: Any, output: Any) -> None:
            if not torch.is_grad_enabled():
                return
            logits, _, index = output
            with torch.no_grad():
                self._counts[layer] += torch.bincount(index.reshape(-1).cpu(),
                                                      minlength=self.num_experts).double()
                logp = torch.log_softmax(logits.float(), dim=-1)
                self._entropy_sum[layer] += float(-(logp.exp() * logp).sum(-1).sum())
                self._tokens[layer] += logits.shape[0]

        return record

    def collect(self) -> tuple[dict[str, float], dict[str, list[float]]]:
        """(scalar metrics for the logger, per-layer expert fractions) since the last call; then reset.

        Returns empty dicts when no training forward pass ran in the window.
        """
        scalars: dict[str, float] = {}
        fractions: dict[str, list[float]] = {}
        per_layer = []
        for layer, _ in self.routers:
            counts, tokens = self._counts[layer], self._tokens[layer]
            if tokens == 0:
                continue
            frac = counts / counts.sum()
            max_over_mean = float(frac.max()) * self.num_experts
            entropy = self._entropy_sum[layer] / tokens
            dead = float((counts == 0).double().mean())
            scalars[f"moe/layer{layer}/max_over_mean"] = max_over_mean
            scalars[f"moe/layer{layer}/router_entropy"] = entropy
            fractions[f"layer{layer}"] = [round(float(x), 6) for x in frac]
            per_layer.append((max_over_mean, entropy, dead))
            counts.zero_()
            self._entropy_sum[layer] = 0.0
            self._tokens[layer] = 0
        if per_layer:
            scalars["moe/max_over_mean"] = max(p[0] for p in per_layer)
            scalars["moe/router_entropy"] = sum(p[1] for p in per_layer) / len(per_layer)
            scalars["moe/router_entropy_uniform"] = math.log(self.num_experts)
            scalars["moe/dead_fraction"] = sum(p[2] for p in per_layer) / len(per_layer)
        return scalars, fractions
