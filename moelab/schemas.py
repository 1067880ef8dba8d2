"""Imports every module that declares a recipe schema, so `load_config` can find them by `kind`.

These modules are light (dataclasses only); heavy libraries load inside the jobs themselves.
"""

import checkpoints_index.toy.schema  # noqa: F401  (toy_train)
import inference.sweep_schema  # noqa: F401  (sweep)
import moelab.demo_schema  # noqa: F401  (demo)
import rl.schema  # noqa: F401  (grpo)
