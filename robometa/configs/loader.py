"""Building a :class:`TrainConfig` from defaults, presets, YAML files and ``key=value``.

Precedence, lowest first: the dataclass defaults, the algorithm's preset
(``presets/<algo>/<preset>.yaml``), the family's tuning of that preset where one
exists (``presets/<algo>/<preset>/<family>.yaml``), the user's ``--config FILE``,
explicit CLI flags (``--family``, ``--seed``, ``--device``), then ``key=value``
overrides. Keys of the
algorithm section may be written ``algo_params.inner_lr=0.05`` or just
``inner_lr=0.05``; the family's options ``family_options.observe_goal=true``. Every
key and value is checked against the dataclasses' types (the family's options
against its constructor); mistakes raise :class:`RobometaError` naming the valid
choices.

The algorithm's section schema comes from the algorithm registry
(:func:`robometa.algos.config_class`), so a learner registered with
:func:`robometa.algos.register_algorithm` is configured like the built-in ones; one
without presets of its own starts from its config's defaults when the default
preset (``quick``) is asked for.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from robometa.configs.train import TrainConfig
from robometa.errors import RobometaError, choice_error

PRESET_DIR = Path(__file__).parent / "presets"
DEFAULT_ALGO = TrainConfig.algo
DEFAULT_PRESET = "quick"
ALGO_SECTION = "algo_params"
FAMILY_SECTION = "family_options"


def preset_names(algo: str) -> list[str]:
    return sorted(p.stem for p in (PRESET_DIR / algo).glob("*.yaml"))


def family_preset_path(algo: str, preset: str, family: str) -> Path | None:
    """``presets/<algo>/<preset>/<family>.yaml`` when that family has its own tuning of
    the preset, else ``None``. ``family`` may be a name or a gymnasium id."""
    from robometa.tasks import family_class

    path = PRESET_DIR / algo / preset / f"{family_class(family).name}.yaml"
    return path if path.is_file() else None


def read_yaml(path: str | Path, what: str = "config file") -> dict[str, Any]:
    """A YAML mapping from ``path``; missing, unreadable or non-mapping files raise."""
    path = Path(path)
    if not path.is_file():
        raise RobometaError(f"{what} {str(path)!r} not found")
    try:
        data = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise RobometaError(f"{what} {str(path)!r} is not valid YAML: {first}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise RobometaError(f"{what} {str(path)!r} must hold a mapping of keys to values")
    return data


def parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    """``["a=1", "algo_params.hidden=[64,64]"]`` -> nested dict; values parsed as YAML."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise RobometaError(f"override {item!r} must look like key=value")
        try:
            value = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError:
            value = text
        node = out
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise RobometaError(f"override {item!r} conflicts with another override")
        node[leaf] = value
    return out


def _fields(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _check_value(key: str, value: Any, tp: Any) -> Any:
    """Check (and lightly convert) a YAML value against a field type."""
    origin = typing.get_origin(tp)
    if origin is dict:  # family_options: names are checked against the family when it is built
        if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
            raise RobometaError(f"{key} must be a mapping of option names to values, got {value!r}")
        return dict(value)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _check_value(key, value, arg)
            except RobometaError:
                pass
        names = " or ".join("null" if a is type(None) else getattr(a, "__name__", str(a)) for a in args)
        raise RobometaError(f"{key} must be {names}, got {value!r}")
    if origin is tuple:
        (item,) = {a for a in typing.get_args(tp) if a is not Ellipsis}
        if not isinstance(value, (list, tuple)):
            raise RobometaError(f"{key} must be a list of {item.__name__}, got {value!r}")
        return tuple(_check_value(f"{key}[{i}]", v, item) for i, v in enumerate(value))
    if tp is bool:
        if not isinstance(value, bool):
            raise RobometaError(f"{key} must be true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise RobometaError(f"{key} must be an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise RobometaError(f"{key} must be a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise RobometaError(f"{key} must be a string, got {value!r}")
        return value
    raise TypeError(f"unsupported config field type {tp!r} for {key}")  # a bug, not a user error


def _merge(
    base: dict[str, Any], layer: Mapping[str, Any], algo_fields: Mapping[str, Any], source: str
) -> None:
    """Merge one layer of settings into ``base`` (flat run keys + an ``algo_params`` dict)."""
    run_fields = _fields(TrainConfig)
    for key, value in layer.items():
        if key == ALGO_SECTION:
            if not isinstance(value, Mapping):
                raise RobometaError(f"{ALGO_SECTION} in {source} must be a mapping")
            for sub, v in value.items():
                if sub not in algo_fields:
                    raise choice_error(f"{ALGO_SECTION} key in {source}", sub, sorted(algo_fields))
                base[ALGO_SECTION][sub] = v
        elif key == FAMILY_SECTION:  # merged option by option, like the algorithm's section
            if not isinstance(value, Mapping):
                raise RobometaError(f"{FAMILY_SECTION} in {source} must be a mapping of options to values")
            base.setdefault(FAMILY_SECTION, {}).update(value)
        elif key in run_fields:
            base[key] = value
        elif key in algo_fields:  # convenience: algorithm keys without the section prefix
            base[ALGO_SECTION][key] = value
        else:
            valid = sorted(k for k in run_fields if k != ALGO_SECTION) + sorted(algo_fields)
            raise choice_error(f"config key in {source}", key, valid)


def resolve_config(
    algo: str | None = None,
    preset: str | None = "quick",
    config_file: str | Path | None = None,
    overrides: Sequence[str] | Mapping[str, Any] = (),
    family: str | None = None,
    seed: int | None = None,
    device: str | None = None,
) -> TrainConfig:
    """The fully resolved, type-checked config of a run."""
    file_layer = read_yaml(config_file) if config_file is not None else {}
    over_layer = parse_overrides(overrides) if not isinstance(overrides, Mapping) else dict(overrides)
    # The algorithm decides the preset and the section's schema, so settle it first.
    for layer in (over_layer, {"algo": algo} if algo else {}, file_layer):
        if "algo" in layer:
            algo = layer["algo"]
            break
    algo = algo or DEFAULT_ALGO
    from robometa.algos import algorithm_names, config_class

    if not isinstance(algo, str) or algo not in algorithm_names():
        raise choice_error("algorithm", algo, algorithm_names())
    algo_fields = _fields(config_class(algo))

    merged: dict[str, Any] = {ALGO_SECTION: {}}
    if preset == DEFAULT_PRESET and not preset_names(algo):
        preset = None  # a learner without presets (one registered elsewhere): its config's defaults
    if preset is not None:
        if preset not in preset_names(algo):
            raise choice_error(f"preset for {algo}", preset, preset_names(algo))
        base = read_yaml(PRESET_DIR / algo / f"{preset}.yaml", "preset")
        _merge(merged, base, algo_fields, f"preset {preset}")
        # The family's own tuning of the preset, once we know which family the run is on.
        fam = next(
            (layer["family"] for layer in (over_layer, {"family": family} if family else {}, file_layer, base)
             if layer.get("family")),
            TrainConfig.family,
        )  # fmt: skip
        tuned = family_preset_path(algo, preset, fam) if isinstance(fam, str) else None
        if tuned is not None:
            _merge(merged, read_yaml(tuned, "preset"), algo_fields, f"preset {preset}/{tuned.stem}")
    _merge(merged, file_layer, algo_fields, str(config_file))
    flags = {k: v for k, v in (("family", family), ("seed", seed), ("device", device)) if v is not None}
    _merge(merged, flags, algo_fields, "the command line")
    _merge(merged, over_layer, algo_fields, "overrides")
    merged["algo"] = algo
    return build_config(merged)


def build_config(data: Mapping[str, Any]) -> TrainConfig:
    """A :class:`TrainConfig` from a plain (e.g. ``config.yaml``) mapping; checks everything."""
    from robometa.algos import config_class

    data = dict(data)
    algo = data.get("algo", DEFAULT_ALGO)
    from robometa.algos import algorithm_names

    if not isinstance(algo, str) or algo not in algorithm_names():
        raise choice_error("algorithm", algo, algorithm_names())
    algo_cls = config_class(algo)
    section = data.pop(ALGO_SECTION, None) or {}
    run_kwargs = {}
    run_fields = _fields(TrainConfig)
    for key, value in data.items():
        if key not in run_fields or key == ALGO_SECTION:
            raise choice_error("config key", key, sorted(k for k in run_fields if k != ALGO_SECTION))
        run_kwargs[key] = _check_value(key, value, run_fields[key])
    algo_fields = _fields(algo_cls)
    algo_kwargs = {}
    for key, value in dict(section).items():
        if key not in algo_fields:
            raise choice_error(f"{ALGO_SECTION} key", key, sorted(algo_fields))
        algo_kwargs[key] = _check_value(f"{ALGO_SECTION}.{key}", value, algo_fields[key])
    cfg = TrainConfig(**run_kwargs, algo_params=algo_cls(**algo_kwargs))
    problems = cfg.validate()
    if problems:
        raise RobometaError(problems[0])
    # An unknown family, option or option value: a one-line error naming the valid ones.
    cfg.build_family()
    return cfg


def config_to_dict(cfg: TrainConfig) -> dict[str, Any]:
    """Plain YAML-able mapping of a config (tuples become lists)."""

    def plain(v: Any) -> Any:
        if isinstance(v, tuple):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v

    out = {f.name: plain(getattr(cfg, f.name)) for f in dataclasses.fields(cfg) if f.name != ALGO_SECTION}
    if not out[FAMILY_SECTION]:
        # Written only when set, so runs without options keep the config (and checkpoint
        # record) they always had, and resume as before.
        del out[FAMILY_SECTION]
    out[ALGO_SECTION] = {
        f.name: plain(getattr(cfg.algo_params, f.name)) for f in dataclasses.fields(cfg.algo_params)
    }
    return out


def config_to_yaml(cfg: TrainConfig) -> str:
    return yaml.safe_dump(config_to_dict(cfg), sort_keys=False)
