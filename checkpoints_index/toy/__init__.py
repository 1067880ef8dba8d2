"""The lab's toy sparsity family: a GSM8K-format arithmetic task and tiny Mixtral checkpoints trained on it.

`task` generates problems, `tokenizer` builds the shared byte-level BPE, `train` rebuilds the
family from `configs/toy/train.yaml`, `evaluate` measures it, `cli` is `moelab toy train|eval`.
The trained members live in `models/<name>/` and are picked up by the checkpoint index.
"""
