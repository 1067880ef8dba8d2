"""Producing samples: vLLM / server / transformers backends behind one interface, the one greedy HF
decoding, the content-addressed sample store, reward-model scores of stored samples.

The rooms of `inference/` and their order: inference/README.md.
"""
