"""core_ext/__init__.py: implementation selection and the run-time switches."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

import core_ext
from tests.core_ext.conftest import load_impl

KERNELS = {"mask", "snowflake", "frames", "fanout"}


def _probe(env: dict[str, str], prelude: str = "") -> subprocess.CompletedProcess[str]:
    code = textwrap.dedent(prelude) + textwrap.dedent(
        """
        import json, sys
        import core_ext
        ours = sorted(m for m in sys.modules
                      if m.split(".")[0] in {"parley", "gateway", "storage", "api"})
        print(json.dumps({"impl": core_ext.IMPLEMENTATION, "ours": ours}))
        """
    )
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("CORE_EXT_")}
    full_env.update(env)
    return subprocess.run(
        [sys.executable, "-c", code], env=full_env, capture_output=True, text=True, check=False
    )


def test_implementation_reports_every_kernel() -> None:
    assert set(core_ext.IMPLEMENTATION) == KERNELS
    assert set(core_ext.IMPLEMENTATION.values()) <= {"cython", "python"}


def test_no_extensions_forces_python_twins() -> None:
    result = _probe({"CORE_EXT_NO_EXTENSIONS": "1", "CORE_EXT_REQUIRE_C": "1"})
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["impl"] == dict.fromkeys(KERNELS, "python")


def test_compiled_modules_are_used_when_built() -> None:
    load_impl("cython")  # skips (or fails under REQUIRE_C) when not built
    result = _probe({"CORE_EXT_REQUIRE_C": "1"})
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["impl"] == dict.fromkeys(KERNELS, "cython")


_BLOCK_MASK = """
import importlib.abc, sys
class _Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "core_ext._mask":
            raise ImportError("blocked by the test")
        return None
sys.meta_path.insert(0, _Block())
"""


def test_a_missing_compiled_module_falls_back_to_its_twin_only() -> None:
    load_impl("cython")
    result = _probe({}, _BLOCK_MASK)
    assert result.returncode == 0, result.stderr
    impl = json.loads(result.stdout)["impl"]
    assert impl["mask"] == "python"
    assert impl["frames"] == "python"  # frames_c cimports the compiled mask kernel
    assert impl["snowflake"] == impl["fanout"] == "cython"


def test_require_c_makes_a_missing_compiled_module_fatal() -> None:
    result = _probe({"CORE_EXT_REQUIRE_C": "1"}, _BLOCK_MASK)
    assert result.returncode != 0
    assert "CORE_EXT_REQUIRE_C=1" in result.stderr
    assert "ImportError" in result.stderr


def test_core_ext_imports_nothing_from_other_parley_packages() -> None:
    result = _probe({})
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["ours"] == []


def test_a_plain_python_copy_does_not_count_as_compiled() -> None:
    with pytest.raises(ImportError, match="not a compiled extension"):
        core_ext._load_compiled("core_ext.frames_py")


def test_kernels_rejects_unknown_names() -> None:
    with pytest.raises(ValueError, match="unknown implementation"):
        core_ext.kernels("rust")  # type: ignore[arg-type]


def test_public_api_is_the_selected_implementation() -> None:
    selected = core_ext.kernels(core_ext.IMPLEMENTATION["frames"])
    assert core_ext.FrameParser is selected.FrameParser
    assert core_ext.build_frame is selected.build_frame
    assert core_ext.mask is core_ext.kernels(core_ext.IMPLEMENTATION["mask"]).mask
