"""Loading ``Settings``: CLI flags over ``PARLEY_*`` environment variables over
defaults (the schema and its validation live in ``parley/config.py``)."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from parley.config import ConfigError, Settings, validate


def _coerce(name: str, raw: str, default: Any) -> Any:
    try:
        if isinstance(default, bool):
            return raw.lower() in {"1", "true", "yes", "on"}
        if isinstance(default, int):
            return int(raw)
        if isinstance(default, float):
            return float(raw)
        if isinstance(default, Path):
            return Path(raw)
    except ValueError as exc:
        raise ConfigError(
            f"PARLEY_{name.upper()}={raw!r} is not a valid {type(default).__name__}") from exc
    return raw


def load_settings(overrides: Mapping[str, Any] | None = None,
                  environ: Mapping[str, str] | None = None) -> Settings:
    """Build Settings from ``environ`` (default ``os.environ``) and overrides.

    ``overrides`` holds values given on the command line; ``None`` values are
    ignored so that an unset flag falls back to the environment.
    """
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {
        f.name: _coerce(f.name, env[f"PARLEY_{f.name.upper()}"], f.default)
        for f in dataclasses.fields(Settings)
        if f.name != "extra" and f"PARLEY_{f.name.upper()}" in env
    }
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    settings = Settings(**values)
    validate(settings)
    return settings


def settings_env(settings: Settings) -> dict[str, str]:
    """``PARLEY_*`` variables that make ``load_settings`` in another process
    give back ``settings`` (every field that differs from its default), so a
    child process runs with exactly its parent's settings, flags included."""
    env: dict[str, str] = {}
    for f in dataclasses.fields(Settings):
        if f.name == "extra":
            continue
        value = getattr(settings, f.name)
        default = f.default if f.default is not dataclasses.MISSING else None
        if value == default:
            continue
        env[f"PARLEY_{f.name.upper()}"] = ("true" if value else "false") if isinstance(
            value, bool) else str(value)
    return env
