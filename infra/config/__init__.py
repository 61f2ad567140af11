"""Configuration loading: typed dataclass schema -> YAML preset -> dotlist overrides.

The order is always ``OmegaConf.structured(Schema)`` -> merge the preset -> merge ``key=value``
overrides -> ``OmegaConf.to_object``, so that overrides win and ``__post_init__`` only validates.
Unknown keys and values of the wrong type fail with a :class:`ConfigError` that names the key and
lists the valid ones (with close matches first).
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

T = TypeVar("T")

PRESET_DIR = Path(__file__).parent / "presets"


class ConfigError(ValueError):
    """A configuration that cannot be loaded: unknown key, wrong type, bad value or missing preset."""


def valid_keys(node: Any, prefix: str = "") -> list[str]:
    """All dotted leaf keys of a config node (dataclass type/instance or DictConfig)."""
    cfg = node if isinstance(node, DictConfig) else OmegaConf.structured(node)
    keys: list[str] = []
    for key in cfg.keys():
        path = f"{prefix}{key}"
        value = cfg._get_node(key)
        if isinstance(value, DictConfig) and not _is_free_dict(value):
            keys.extend(valid_keys(value, prefix=f"{path}."))
        else:
            keys.append(path)
    return keys


def _is_free_dict(node: DictConfig) -> bool:
    """A ``dict[str, X]`` field: any key is allowed below it."""
    return node._metadata.object_type in (None, dict)


def preset_path(name: str) -> Path:
    """Resolve a preset given by name (``h1`` -> ``infra/config/presets/h1.yaml``) or by path."""
    path = Path(name)
    if path.suffix in (".yaml", ".yml"):
        if not path.is_file():
            raise ConfigError(f"preset file {path} does not exist")
        return path
    candidate = PRESET_DIR / f"{name}.yaml"
    if not candidate.is_file():
        known = sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))
        raise ConfigError(f"unknown preset {name!r}; known presets: {', '.join(known)} (or give a .yaml path)")
    return candidate


def load_config(schema: type[T], overrides: Sequence[str] = (), preset: str | None = None) -> T:
    """Build a validated ``schema`` instance from defaults, an optional preset and dotlist overrides.

    Args:
        schema: a dataclass type whose defaults are the embedded configuration.
        overrides: ``key=value`` strings (OmegaConf dotlist), e.g. ``sim.num_envs=32``.
        preset: a preset name from ``infra/config/presets`` or a path to a YAML file.
    """
    base = OmegaConf.structured(schema)
    layers: list[tuple[str, Any]] = []
    if preset:
        path = preset_path(preset)
        layers.append((f"preset {path}", OmegaConf.load(path)))
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key=value")
        try:
            layers.append((f"override {item!r}", OmegaConf.from_dotlist([item])))
        except Exception as exc:  # noqa: BLE001 - YAML and OmegaConf parse errors have many types
            raise ConfigError(f"override {item!r}: cannot parse the value: {exc}".replace("\n", " ")) from exc
    for source, layer in layers:
        base = _merge(base, layer, source, schema)
    try:
        return OmegaConf.to_object(base)  # runs __post_init__ validation
    except (OmegaConfBaseException, ValueError) as exc:  # ValueError: a schema's __post_init__
        raise ConfigError(f"invalid configuration: {exc}") from exc


def _merge(base: DictConfig, layer: DictConfig | ListConfig, source: str, schema: type) -> DictConfig:
    try:
        return OmegaConf.merge(base, layer)
    except OmegaConfBaseException as exc:
        key = getattr(exc, "full_key", None) or ""
        keys = valid_keys(schema)
        if "not in" in str(exc) or "Key" in type(exc).__name__:
            close = difflib.get_close_matches(key, keys, n=3)
            hint = f" Did you mean: {', '.join(close)}?" if close else ""
            raise ConfigError(
                f"{source}: unknown config key {key!r}.{hint} Valid keys: {', '.join(keys)}"
            ) from exc
        raise ConfigError(f"{source}: bad value for {key!r}: {exc.msg if hasattr(exc, 'msg') else exc}") from exc


def to_dict(cfg: Any) -> dict:
    """A plain nested dict of a config dataclass instance (for logging and JSON)."""
    if dataclasses.is_dataclass(cfg):
        return OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True)  # type: ignore[return-value]
    return dict(cfg)


def to_yaml(cfg: Any) -> str:
    """The resolved configuration as YAML, as written next to every run."""
    return OmegaConf.to_yaml(OmegaConf.structured(cfg) if dataclasses.is_dataclass(cfg) else cfg)
