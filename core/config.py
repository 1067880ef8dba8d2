"""Recipes: typed OmegaConf schemas, YAML files and `key=value` overrides, validated up front.

Every job (sweep, grpo, demo, toy training, scoring) declares a dataclass schema whose fields carry
help text (TRL's convention: the help text is the documentation). A recipe is a YAML file whose
top-level `kind:` names the schema; `key=value` overrides use dotted paths. Everything is merged
and validated *before* any heavy work starts, and every mistake becomes one `UserError` line that
names the key, the file and what was expected, never a traceback: on a cluster a typo must not
cost a queued job its allocation and model load. Three kinds of rule, each declared once:

- a fixed set of choices is the field's type, `Literal[...]` (OmegaConf rejects any other value
  with the key, the value and the choices);
- a numeric range is `config_field(at_least=, above=, at_most=, below=)`, applied to the number, or to
  every number of a list or of a mapping;
- a rule between fields is the recipe class's `cross_check(cfg)`, called last.

    cfg = load_config("configs/sweep/toy.yaml", ["sampling.num_samples=64"], schema=SweepConfig)
    save_resolved_config(cfg, out_dir)          # every run writes config.yaml beside its outputs

Overrides are what a person types. A composite job (demo, deficit, posttrain) that configures a
sub-job passes what it sets as a mapping instead, `values=`, merged after the overrides (so the
job's settings win) and validated with them: never `key=value` strings built in code.

    load_config(path, user_overrides, schema=SweepConfig, values={"models": models, **placed_in(...)})

Every schema also says where its job writes: `run_dir(cfg) -> Path`, the one folder of the run's
outputs, and `placed_in(run_dir) -> dict`, the values that put a run there (its inverse), both static
methods beside `cross_check`. OmegaConf configs are DictConfigs, not dataclass instances, so a
`@property` would not reach them; a static method taking the config is the form `cross_check`
already has. `moelab.recipes.run_dir` / `placed_in` pick the schema by `kind`.

This is the bottom layer: it knows no job. The table from `kind` to schema lives in the application
layer (`moelab.recipes`), which is the only code that knows every job.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from omegaconf import MISSING, DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from core.errors import UserError

__all__ = ["MISSING", "Dtype", "DtypeOrAuto", "config_field", "recipe_kind", "load_config", "save_resolved_config",
           "config_to_yaml", "describe_fields"]


# Weights dtypes as every recipe spells them (torch's names; the loaders' aliases such as `bf16` are not
# recipe values, so a check like GRPO's "bfloat16 without master weights" cannot be side-stepped by spelling).
Dtype = typing.Literal["float32", "bfloat16", "float16"]
# ... and where a backend may choose: `auto` = the checkpoint's dtype on a GPU, float32 on a CPU.
DtypeOrAuto = typing.Literal["auto", "float32", "bfloat16", "float16"]


def config_field(default: Any = MISSING, help: str = "", *, must_exist: bool = False, at_least: float | None = None,
                 above: float | None = None, at_most: float | None = None, below: float | None = None) -> Any:
    """A dataclass field with help text. `must_exist=True` marks a path that must exist on disk; `at_least`,
    `above`, `at_most` and `below` bound a number, or each number of a list or mapping (checked by
    `load_config` with the recipe, before anything loads). `None` always passes a bound: it means "not set".

    Mutable defaults (lists, dicts, nested dataclasses) are wrapped in a default_factory.
    """
    metadata = {"help": help, "must_exist": must_exist, "at_least": at_least, "above": above, "at_most": at_most,
                "below": below}
    if isinstance(default, (list, dict)):
        value = default
        return dataclasses.field(default_factory=lambda: typing.cast(Any, type(value)(value)), metadata=metadata)
    if dataclasses.is_dataclass(default) and not isinstance(default, type):
        value = default
        return dataclasses.field(default_factory=lambda: dataclasses.replace(value), metadata=metadata)
    if isinstance(default, type) and dataclasses.is_dataclass(default):
        return dataclasses.field(default_factory=default, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def _read_yaml(path: Path) -> dict:
    if not path.is_file():
        raise UserError(f"recipe file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise UserError(f"{path}:{where} is not valid YAML ({getattr(err, 'problem', err)})") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: a recipe must be a YAML mapping of keys to values")
    return data


def recipe_kind(path: str | Path | None, overrides: list[str] | None = None) -> Any:
    """The `kind` a recipe names (a `kind=...` override wins); None when it names none."""
    return _kind_of(_read_yaml(Path(path)) if path is not None else {}, overrides)


def _kind_of(data: dict, overrides: list[str] | None) -> Any:
    kind = data.get("kind")
    for item in overrides or []:
        if item.startswith("kind="):
            kind = item.split("=", 1)[1]
    return kind


def _one_line(err: OmegaConfBaseException) -> str:
    message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return message


def _check_override_key(schema: type, key: str, source: str) -> None:
    """Fail with the full dotted key when an override names a key the schema does not have.

    OmegaConf would name only the first unknown component ('no' for 'no.such.key'); users
    typed the whole path, so the message repeats it whole.
    """
    node: Any = schema
    walked: list[str] = []
    for part in key.split("."):
        if not dataclasses.is_dataclass(node):
            if typing.get_origin(node) in (dict, typing.Dict) or node in (dict, Any):
                return  # free-form mapping (e.g. extra kwargs passed through to a library)
            raise UserError(f"{source}: unknown key '{key}': '{'.'.join(walked)}' is not a section")
        names = [f.name for f in dataclasses.fields(node)]
        if part not in names:
            where = ".".join(walked) or "<top level>"
            raise UserError(f"{source}: unknown key '{key}' (keys under {where}: {', '.join(names)})")
        walked.append(part)
        node = _strip_optional(typing.get_type_hints(node)[part])


def _strip_optional(hint: Any) -> Any:
    if typing.get_origin(hint) is typing.Union:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return args[0] if len(args) == 1 else Any
    return hint


def load_config(path: str | Path | None, overrides: list[str] | None, schema: type,
                values: Mapping[str, Any] | None = None) -> DictConfig:
    """Merge schema defaults <- YAML recipe <- overrides <- values; validate; return a typed DictConfig.

    `overrides` are a person's `key=value` strings; `values` is what a job running this recipe sets
    itself (e.g. `{"models": [...], "output_dir": "..."}`; sections as nested mappings), merged last.

    Raises `UserError` (one line naming the key and the file) on a recipe of another `kind`, an
    unknown key, a wrong type, a value outside its `Literal` choices or its bounds, a missing required
    value, a missing file marked `must_exist`, or a rule of the schema's `cross_check` broken.
    """
    overrides = list(overrides or [])
    source = str(path) if path is not None else "overrides"
    data = _read_yaml(Path(path)) if path is not None else {}
    expected = getattr(schema, "kind", None)
    kind = _kind_of(data, overrides)
    if isinstance(expected, str) and kind is not None and kind != expected:
        raise UserError(f"{source}: kind is {kind!r}, expected a {expected!r} recipe")
    base = OmegaConf.structured(schema)
    try:
        merged = OmegaConf.merge(base, data)
    except OmegaConfBaseException as err:
        raise UserError(f"{source}: key '{err.full_key}': {_one_line(err)}") from None
    for item in overrides:
        if "=" not in item:
            raise UserError(f"override '{item}' must look like key=value (dotted key, e.g. sampling.n=64)")
        key, _ = item.split("=", 1)
        _check_override_key(schema, key.lstrip("+"), f"override {item}")
        try:
            merged = OmegaConf.merge(merged, OmegaConf.from_dotlist([item.lstrip("+")]))
        except OmegaConfBaseException as err:
            raise UserError(f"override {item}: key '{err.full_key or key}': {_one_line(err)}") from None
    if values:
        try:
            merged = OmegaConf.merge(merged, values)
        except OmegaConfBaseException as err:
            raise UserError(f"{source}: key '{err.full_key}' as set by the job that runs this recipe: "
                            f"{_one_line(err)}") from None
    try:
        OmegaConf.to_container(merged, resolve=True, throw_on_missing=True)
    except OmegaConfBaseException as err:
        raise UserError(f"{source}: key '{err.full_key}' is required but has no value "
                        f"(set it in the recipe or pass {err.full_key}=...)") from None
    _check_values(merged, schema, source, prefix="")
    cross_check = getattr(schema, "cross_check", None)
    if cross_check is not None:
        try:
            cross_check(merged)
        except UserError as err:
            raise UserError(f"{source}: {err}") from None
    return merged


def _check_values(cfg: DictConfig, schema: type, source: str, prefix: str) -> None:
    """Paths marked `must_exist` exist; numbers respect their bounds; sections (and lists of them) recurse."""
    hints = typing.get_type_hints(schema)
    for f in dataclasses.fields(schema):
        value = cfg.get(f.name)
        sub = _strip_optional(hints.get(f.name))
        key = f"{prefix}{f.name}"
        item = typing.get_args(sub)[0] if typing.get_origin(sub) is list and typing.get_args(sub) else None
        if dataclasses.is_dataclass(sub) and isinstance(value, DictConfig):
            _check_values(value, sub, source, prefix=f"{key}.")
        elif dataclasses.is_dataclass(item) and isinstance(value, ListConfig):
            for i, element in enumerate(value):
                _check_values(element, item, source, prefix=f"{key}[{i}].")
        elif f.metadata.get("must_exist") and value not in (None, "") and not Path(str(value)).exists():
            raise UserError(f"{source}: key '{key}': file not found: {value}")
        else:
            _check_bounds(value, f.metadata, source, key)


def _check_bounds(value: Any, bounds: Any, source: str, key: str) -> None:
    """A number against the field's bounds; a list or mapping: each of its numbers, named by index or key."""
    if isinstance(value, ListConfig):
        for i, element in enumerate(value):
            _check_bounds(element, bounds, source, f"{key}[{i}]")
        return
    if isinstance(value, DictConfig):
        for name, element in value.items():
            _check_bounds(element, bounds, source, f"{key}.{name}")
        return
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return
    at_least, above, at_most, below = (bounds.get(b) for b in ("at_least", "above", "at_most", "below"))
    if at_least is not None and value < at_least:
        raise UserError(f"{source}: key '{key}' must be at least {at_least:g}, got {value}")
    if above is not None and value <= above:
        raise UserError(f"{source}: key '{key}' must be greater than {above:g}, got {value}")
    if at_most is not None and value > at_most:
        raise UserError(f"{source}: key '{key}' must be at most {at_most:g}, got {value}")
    if below is not None and value >= below:
        raise UserError(f"{source}: key '{key}' must be less than {below:g}, got {value}")


def config_to_yaml(cfg: DictConfig) -> str:
    return OmegaConf.to_yaml(cfg, resolve=True)


def save_resolved_config(cfg: DictConfig, out_dir: str | Path, name: str = "config.yaml") -> Path:
    """Write the fully resolved recipe beside a run's outputs, so every number can be traced back."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    target = out / name
    target.write_text(config_to_yaml(cfg))
    return target


def describe_fields(schema: type, prefix: str = "") -> list[tuple[str, str, str]]:
    """(dotted key, type, help) for every field, nested sections included: for `--help` output and docs."""
    rows = []
    hints = typing.get_type_hints(schema)
    for f in dataclasses.fields(schema):
        hint = hints.get(f.name)
        if dataclasses.is_dataclass(hint):
            rows.extend(describe_fields(hint, prefix=f"{prefix}{f.name}."))
        else:
            rows.append((f"{prefix}{f.name}", _type_name(hint), f.metadata.get("help", "")))
    return rows


def _type_name(hint: Any) -> str:
    """`int`, `a|b|c` for a Literal (the choices are the documentation), `list[a|b]`, `Optional[...]` as is."""
    hint = _strip_optional(hint) if typing.get_origin(hint) is typing.Union else hint
    if typing.get_origin(hint) is typing.Literal:
        return "|".join(str(choice) for choice in typing.get_args(hint))
    if typing.get_origin(hint) is list and typing.get_args(hint):
        return f"list[{_type_name(typing.get_args(hint)[0])}]"
    return getattr(hint, "__name__", str(hint))


class RunInOutputDir:
    """Base of a recipe schema whose job writes into `output_dir` itself (eval, taskloss, grpo, toy train).

    Every schema answers `run_dir(cfg)` (the folder its job writes into) and `placed_in(folder)` (the values
    that make `folder` that folder, its exact inverse), so a job that runs other jobs (demo, deficit,
    posttrain) places them by merging a mapping, whatever each kind's folder convention is.
    """

    @staticmethod
    def run_dir(cfg: Any) -> Path:
        return Path(cfg.output_dir)

    @staticmethod
    def placed_in(run_dir: Path) -> dict[str, Any]:
        return {"output_dir": str(run_dir)}


class RunInNamedDir:
    """Base of a recipe schema whose job writes into `<output_dir>/<run_name>` (sweep, deficit); see
    `RunInOutputDir`."""

    @staticmethod
    def run_dir(cfg: Any) -> Path:
        return Path(cfg.output_dir) / cfg.run_name

    @staticmethod
    def placed_in(run_dir: Path) -> dict[str, Any]:
        return {"output_dir": str(Path(run_dir).parent), "run_name": Path(run_dir).name}
