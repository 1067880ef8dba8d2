"""Import a Python file that is not in a package (a bench, a task's utils.py, a script) as a module, for tests."""

import importlib.util
from pathlib import Path


def load_file(path: str | Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
