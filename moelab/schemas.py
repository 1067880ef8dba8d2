"""Imports every module that declares a recipe schema, so `load_config` can find them by `kind`.

These modules are light (dataclasses only); heavy libraries load inside the jobs themselves.
"""

import importlib

SCHEMA_MODULES = [
    "checkpoints_index.toy.schema",
    "inference.sweep_schema",
    "rl.schema",
    "moelab.demo_schema",
]

for _module in SCHEMA_MODULES:
    try:
        importlib.import_module(_module)
    except ModuleNotFoundError as _err:
        if not (_err.name and _module.startswith(_err.name)):
            raise
