"""Build script: compiles the ``core_ext`` Cython kernels at install time.

Switches (environment variables, read at build time):

``CORE_EXT_BUILD``
    ``auto`` (default): try to compile; on failure warn loudly and install the
    pure-Python twins only.  ``yes``: a failed build fails the install.
    ``no``: do not compile at all.
``CORE_EXT_DEBUG=1``
    Build with Cython annotate (HTML next to each source) and linetrace, for
    profiling and coverage of the compiled code (``make debug``).

Two kinds of compiled module live in ``core_ext``:

* ``_name.pyx`` kernels (masking, snowflake packing) with a small Python twin
  ``_name_py.py``;
* ``name_py.py`` logic modules that are compiled *as they are* under the name
  ``name_c`` with a ``name_c.pxd`` beside them adding C types (the aiohttp
  ``reader_py``/``reader_c`` way), so the two can never drift.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_ext import build_ext

HERE = Path(__file__).parent
CORE = HERE / "core_ext"
MODE = os.environ.get("CORE_EXT_BUILD", "auto").lower()
DEBUG = os.environ.get("CORE_EXT_DEBUG", "") == "1"
if MODE not in {"auto", "yes", "no"}:
    sys.exit(f"CORE_EXT_BUILD must be auto, yes or no, not {MODE!r}")


def _twin_sources() -> list[tuple[str, Path]]:
    """(module name, source) for every compiled module in core_ext."""
    found = [(f"core_ext.{pyx.stem}", pyx) for pyx in sorted(CORE.glob("_*.pyx"))]
    for pxd in sorted(CORE.glob("*_c.pxd")):
        # name_c.pxd types the pure-Python source name_py.py, compiled as name_c.
        src_py = CORE / (pxd.stem[: -len("_c")] + "_py.py")
        if src_py.exists():
            generated = CORE / (pxd.stem + ".py")
            shutil.copyfile(src_py, generated)
            found.append((f"core_ext.{pxd.stem}", generated))
    return found


def _extensions() -> list[object]:
    if MODE == "no":
        return []
    try:
        from Cython.Build import cythonize
        from setuptools import Extension
    except ImportError:
        if MODE == "yes":
            raise
        print("WARNING: Cython is not installed; core_ext stays pure Python", file=sys.stderr)
        return []
    macros = [("CYTHON_TRACE_NOGIL", "1")] if DEBUG else []
    exts = [
        Extension(name, [str(src.relative_to(HERE))], define_macros=macros,
                  extra_compile_args=["-O3"])
        for name, src in _twin_sources()
    ]
    directives = {"language_level": "3", "embedsignature": True}
    if DEBUG:
        directives.update({"linetrace": True, "binding": True, "profile": True})
    return list(cythonize(exts, compiler_directives=directives, annotate=DEBUG, quiet=True))


class OptionalBuildExt(build_ext):
    """build_ext that may fail softly, as CORE_EXT_BUILD says."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:
            self._failed(exc)

    def build_extension(self, ext: object) -> None:
        try:
            super().build_extension(ext)  # type: ignore[arg-type]
        except Exception as exc:
            self._failed(exc)

    def _failed(self, exc: Exception) -> None:
        if MODE == "yes":
            raise exc
        print(
            "\n" + "*" * 72 + f"\nWARNING: core_ext failed to compile ({exc});\n"
            "the pure-Python twins will be used. Set CORE_EXT_BUILD=yes to make "
            "this fatal.\n" + "*" * 72,
            file=sys.stderr,
        )


setup(ext_modules=_extensions(), cmdclass={"build_ext": OptionalBuildExt})
