"""core_ext: Parley's hot-path kernels, compiled with a pure-Python twin each.

Kernels (name -> compiled module / Python twin):

* ``mask``      -> ``core_ext._mask`` / ``core_ext._mask_py``: RFC 6455 masking.
* ``snowflake`` -> ``core_ext._snowflake`` / ``core_ext._snowflake_py``: ids.
* ``frames``    -> ``core_ext.frames_c`` / ``core_ext.frames_py``: frame parser
  and builder (one source compiled with ``frames_c.pxd``).  ``frames_c``
  calls ``_mask`` at C level, so it only loads when ``_mask`` does.
* ``fanout``    -> ``core_ext.fanout_c`` / ``core_ext.fanout_py``: one frame to
  many transports, and the per-connection outbound queue (``Outbound``,
  ``OutboundQueue``) that the gateway's connections are built on.

Selection, once, at import time, per kernel:

* ``CORE_EXT_NO_EXTENSIONS=1``: use the Python twins, do not even try the
  compiled modules.  It wins over ``CORE_EXT_REQUIRE_C``.
* otherwise the compiled module is used when it loads, else its twin;
* ``CORE_EXT_REQUIRE_C=1``: ``import core_ext`` raises ImportError if any
  compiled module failed to load (CI uses it so compiled tests cannot vanish).

``IMPLEMENTATION`` maps each kernel name to ``"cython"`` or ``"python"``: what
was loaded.  ``kernels("python" | "cython")`` returns one implementation as a
namespace, whatever the switches say (tests and benchmarks compare the two;
a composition root may choose explicitly).

Rule: core_ext imports nothing from Parley's other packages.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import os
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any, Final, Literal

from core_ext.defs_py import (
    MAX_BACKWARDS_WAIT_MS,
    PARLEY_EPOCH_MS,
    ClockMovedBackwards,
    FrameError,
)

__all__ = [
    "IMPLEMENTATION",
    "MAX_BACKWARDS_WAIT_MS",
    "PARLEY_EPOCH_MS",
    "ClockMovedBackwards",
    "FanoutTarget",
    "Frame",
    "FrameError",
    "FrameParser",
    "Kernels",
    "Outbound",
    "OutboundQueue",
    "SnowflakeGenerator",
    "build_frame",
    "fanout_write",
    "kernels",
    "mask",
    "mask_slice",
    "snowflake_parts",
]

Implementation = Literal["cython", "python"]

# kernel name -> (compiled module, Python twin)
_MODULES: Final = {
    "mask": ("core_ext._mask", "core_ext._mask_py"),
    "snowflake": ("core_ext._snowflake", "core_ext._snowflake_py"),
    "frames": ("core_ext.frames_c", "core_ext.frames_py"),
    "fanout": ("core_ext.fanout_c", "core_ext.fanout_py"),
}


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no")


NO_EXTENSIONS: Final = _env_flag("CORE_EXT_NO_EXTENSIONS")
REQUIRE_C: Final = _env_flag("CORE_EXT_REQUIRE_C")


def _load_compiled(name: str) -> ModuleType:
    """Import a compiled module; ImportError if it is missing or not compiled.

    ``name_c.py`` copies sit next to the extension after a build; if the
    extension is missing, Python would import that copy as plain Python, which
    must not count as compiled.
    """
    module = importlib.import_module(name)
    path = getattr(module, "__file__", None) or ""
    if not path.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES)):
        raise ImportError(f"{name} was loaded from {path!r}, which is not a compiled extension")
    return module


def _select() -> tuple[dict[str, ModuleType], dict[str, str], dict[str, Implementation]]:
    chosen: dict[str, ModuleType] = {}
    failures: dict[str, str] = {}
    implementation: dict[str, Implementation] = {}
    for kernel, (compiled, twin) in _MODULES.items():
        if not NO_EXTENSIONS:
            try:
                chosen[kernel] = _load_compiled(compiled)
                implementation[kernel] = "cython"
                continue
            except ImportError as exc:
                failures[kernel] = f"{compiled}: {exc}"
        chosen[kernel] = importlib.import_module(twin)
        implementation[kernel] = "python"
    return chosen, failures, implementation


_chosen, LOAD_FAILURES, _implementation = _select()
#: kernel name -> "cython" | "python": which implementation is in use.
IMPLEMENTATION: Final[dict[str, Implementation]] = _implementation
if REQUIRE_C and not NO_EXTENSIONS and LOAD_FAILURES:
    raise ImportError(
        "CORE_EXT_REQUIRE_C=1 but compiled core_ext modules failed to load: "
        + "; ".join(LOAD_FAILURES.values())
        + " (rebuild: pip install --no-build-isolation -e . with CORE_EXT_BUILD=yes)"
    )


@dataclass(frozen=True, slots=True)
class Kernels:
    """One complete implementation of the core_ext API."""

    name: Implementation
    mask: Any
    mask_slice: Any
    SnowflakeGenerator: Any
    snowflake_parts: Any
    Frame: Any
    FrameParser: Any
    build_frame: Any
    fanout_write: Any
    Outbound: Any
    OutboundQueue: Any


def kernels(name: Implementation) -> Kernels:
    """Return the ``"python"`` or ``"cython"`` implementation of every kernel.

    Ignores the environment switches.  ImportError if ``"cython"`` is asked
    for and a compiled module does not load.
    """
    load: Callable[[str], ModuleType]
    if name == "python":
        load = importlib.import_module
    elif name == "cython":
        load = _load_compiled
    else:
        raise ValueError(f"unknown implementation {name!r}")
    mods = {kernel: load(pair[0 if name == "cython" else 1]) for kernel, pair in _MODULES.items()}
    return Kernels(
        name=name,
        mask=mods["mask"].mask,
        mask_slice=mods["mask"].mask_slice,
        SnowflakeGenerator=mods["snowflake"].SnowflakeGenerator,
        snowflake_parts=mods["snowflake"].snowflake_parts,
        Frame=mods["frames"].Frame,
        FrameParser=mods["frames"].FrameParser,
        build_frame=mods["frames"].build_frame,
        fanout_write=mods["fanout"].fanout_write,
        Outbound=mods["fanout"].Outbound,
        OutboundQueue=mods["fanout"].OutboundQueue,
    )


# The public API.  mypy sees the Python twins' signatures: they are the
# contract both implementations satisfy.
if TYPE_CHECKING:
    from core_ext._mask_py import mask, mask_slice
    from core_ext._snowflake_py import SnowflakeGenerator, snowflake_parts
    from core_ext.fanout_py import FanoutTarget, Outbound, OutboundQueue, fanout_write
    from core_ext.frames_py import Frame, FrameParser, build_frame
else:
    from core_ext.fanout_py import FanoutTarget

    mask = _chosen["mask"].mask
    mask_slice = _chosen["mask"].mask_slice
    SnowflakeGenerator = _chosen["snowflake"].SnowflakeGenerator
    snowflake_parts = _chosen["snowflake"].snowflake_parts
    Frame = _chosen["frames"].Frame
    FrameParser = _chosen["frames"].FrameParser
    build_frame = _chosen["frames"].build_frame
    fanout_write = _chosen["fanout"].fanout_write
    Outbound = _chosen["fanout"].Outbound
    OutboundQueue = _chosen["fanout"].OutboundQueue
