"""`moelab --version`, and every `key=value` example in the CLI's help is accepted by its recipe kind."""

from __future__ import annotations

import argparse
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import moelab
from moelab.cli import build_parser
from moelab.recipes import load_recipe

LAB = Path(__file__).resolve().parents[1]
# Subcommands whose recipe argument's help names no example YAML: the recipe their examples are for.
EXAMPLE_RECIPES = {"config": "configs/sweep/toy.yaml", "grpo": "configs/grpo/toy.yaml",
                   "toy train": "configs/toy/train.yaml", "toy grid": "configs/toy/grid.yaml"}


def test_version_is_the_package_version():
    done = subprocess.run([sys.executable, "-m", "moelab.cli", "--version"], cwd=LAB, capture_output=True, text=True)
    assert done.returncode == 0
    version = tomllib.loads((LAB / "pyproject.toml").read_text())["project"]["version"]
    assert done.stdout.strip() == f"moelab {version}" == f"moelab {moelab.__version__}"


def override_examples() -> list[tuple[str, str, list[str]]]:
    """(subcommand, recipe, example overrides) from the help text of every `overrides` argument."""
    found = []

    def walk(parser: argparse.ArgumentParser, name: str) -> None:
        actions = {a.dest: a for a in parser._actions}
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub_name, sub in action.choices.items():
                    walk(sub, f"{name} {sub_name}".strip())
        if "overrides" not in actions or "e.g." not in (actions["overrides"].help or ""):
            return
        text = actions["overrides"].help.split("e.g.", 1)[1].split(";")[0]
        examples = [t for t in shlex.split(text) if "=" in t and not re.search(r"=[A-Z_]+$", t)]  # FILE: placeholder
        recipe_help = actions["recipe"].help if "recipe" in actions else ""
        yaml = re.search(r"configs/\S+\.yaml", recipe_help or "")
        recipe = EXAMPLE_RECIPES.get(name) or (yaml.group(0) if yaml else None)
        found.append((name, recipe, examples))

    walk(build_parser(), "")
    return found


@pytest.mark.parametrize("name,recipe,examples", override_examples(), ids=lambda v: v if isinstance(v, str) else "")
def test_help_examples_are_accepted(name, recipe, examples):
    assert recipe, f"moelab {name}: add its example recipe to EXAMPLE_RECIPES"
    assert examples, f"moelab {name}: no key=value example found in its help"
    load_recipe(LAB / recipe, examples)  # raises UserError naming the bad key
