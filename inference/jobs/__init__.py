"""What every job shares: `--shard I/N` for cluster arrays, experiment trackers, uploads to the hub.

The rooms of `inference/` and their order: inference/README.md.
"""
