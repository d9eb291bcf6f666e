"""The dependency rule of docs/architecture.md, checked on every import."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OURS = {"core_ext", "gateway", "api", "storage", "parley", "bench", "loadtest"}
CONCRETE = {"storage.postgres", "storage.writer", "storage.embedded", "storage.hub_memory",
            "storage.hub_redis", "storage.hub_redis_cluster", "storage.redis_conn",
            "storage.blobs_s3", "storage.blobs_local", "storage.presence_redis",
            "storage.presence_memory", "storage.pg_common", "storage.pg_accounts",
            "storage.pg_channels", "storage.pg_messages", "storage.pg_files",
            "storage.pg_apps"}
COMPOSITION = {"parley/composition.py", "parley/runner.py", "parley/cli.py"}


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


def _files(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def _ours(mods: set[str]) -> set[str]:
    return {m for m in mods if m.split(".")[0] in OURS}


def test_core_ext_imports_nothing_of_ours() -> None:
    for f in _files("core_ext"):
        bad = {m for m in _ours(_imports(f)) if not m.startswith("core_ext")}
        assert not bad, f"{f.relative_to(ROOT)} imports {bad}"


def test_storage_interfaces_import_nothing_of_ours() -> None:
    for name in ("interfaces.py", "interfaces_apps.py"):
        assert not _ours(_imports(ROOT / "storage" / name)), name


def test_gateway_and_api_never_import_each_other() -> None:
    for f in _files("gateway"):
        assert not {m for m in _imports(f) if m.split(".")[0] == "api"}, f
    for f in _files("api"):
        assert not {m for m in _imports(f) if m.split(".")[0] == "gateway"}, f


def test_only_the_composition_root_imports_concrete_backends() -> None:
    for package in ("parley", "gateway", "api"):
        for f in _files(package):
            rel = str(f.relative_to(ROOT))
            if rel in COMPOSITION:
                continue
            bad = {m for m in _imports(f) if any(m == c or m.startswith(c + ".")
                                                  for c in CONCRETE)}
            assert not bad, f"{rel} imports concrete backends {bad}"


def test_storage_backends_do_not_reach_into_the_domain() -> None:
    for f in _files("storage"):
        bad = {m for m in _ours(_imports(f)) if m.split(".")[0] in {"parley", "gateway", "api"}}
        assert not bad, f"{f.relative_to(ROOT)} imports {bad}"
