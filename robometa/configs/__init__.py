"""Run configurations: frozen dataclasses, YAML presets, loading with overrides."""

from robometa.configs.loader import (
    build_config,
    config_to_dict,
    config_to_yaml,
    parse_overrides,
    preset_names,
    read_yaml,
    resolve_config,
)
from robometa.configs.maml import MAMLConfig, MAMLPPOConfig, MAMLTRPOConfig
from robometa.configs.train import TrainConfig

__all__ = [
    "MAMLConfig",
    "MAMLPPOConfig",
    "MAMLTRPOConfig",
    "TrainConfig",
    "build_config",
    "config_to_dict",
    "config_to_yaml",
    "parse_overrides",
    "preset_names",
    "read_yaml",
    "resolve_config",
]
