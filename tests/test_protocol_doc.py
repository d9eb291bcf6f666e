"""docs/protocol.md names every command the gateway accepts and every event
it sends, and every state of a connection.

The lists come from the code, not from a list kept by hand: the op strings
the gateway compares ``op`` with (gateway/*.py), the event types it builds
(``{"t": ...}`` literals and ``events.encode(...)`` calls in gateway/ and
parley/, plus ``parley.events.EVENT_TYPES``), and ``gateway.resume.Phase``.
A new op or event therefore fails this test until it is documented: a
command in a table whose first column is ``op``, an event in one whose first
column is ``t``.
"""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path
from typing import Any

from gateway.resume import Phase
from parley import events

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "protocol.md"


def _module(path: Path) -> Any:
    return importlib.import_module(".".join(path.relative_to(ROOT).with_suffix("").parts))


def _strings(node: ast.expr, mod: Any) -> set[str]:
    """The string(s) ``node`` stands for in ``mod``: a literal, a module
    constant (``OP_X``, ``codecs.HEARTBEAT_OP``), or a tuple/set of those.
    Anything else (a local variable, a parameter) stands for nothing."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return {node.value}
    if isinstance(node, ast.Tuple | ast.List | ast.Set):
        return set().union(*(_strings(e, mod) for e in node.elts))
    if isinstance(node, ast.Name | ast.Attribute):
        try:
            value = eval(compile(ast.Expression(node), "<doc-test>", "eval"),  # noqa: S307
                         vars(mod))
        except (NameError, AttributeError):
            return set()
        if isinstance(value, str):
            return {value}
        if isinstance(value, frozenset | set | tuple) and all(isinstance(v, str) for v in value):
            return set(value)
    return set()


def _files(*packages: str) -> list[Path]:
    return sorted(p for pkg in packages for p in (ROOT / pkg).rglob("*.py"))


def code_commands() -> set[str]:
    """Strings compared with a variable named ``op`` in the gateway."""
    found: set[str] = set()
    for path in _files("gateway"):
        mod = _module(path)
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Compare):
                continue
            sides = [node.left, *node.comparators]
            if any(isinstance(s, ast.Name) and s.id == "op" for s in sides):
                for s in sides:
                    found |= _strings(s, mod)
    return found


def code_events() -> set[str]:
    """Event types the code builds: ``{"t": X}`` and ``events.encode(X, ...)``."""
    found = set(events.EVENT_TYPES)
    for path in _files("gateway", "parley"):
        mod = _module(path)
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Dict):
                for k, v in zip(node.keys, node.values, strict=True):
                    if isinstance(k, ast.Constant) and k.value == "t":
                        found |= _strings(v, mod)
            elif isinstance(node, ast.Call) and node.args and (
                    (isinstance(node.func, ast.Attribute) and node.func.attr == "encode"
                     and isinstance(node.func.value, ast.Name)
                     and node.func.value.id == "events")
                    or (isinstance(node.func, ast.Name) and node.func.id == "encode"
                        and path.name == "events.py")):
                found |= _strings(node.args[0], mod)
    return found


def doc_tables() -> dict[str, set[str]]:
    """For each table header's first column: the backticked names in that
    column of its rows (a row may name several: ``a`` / ``b``)."""
    out: dict[str, set[str]] = {}
    header: str | None = None
    lines = DOC.read_text().splitlines()
    for i, line in enumerate(lines):
        if not line.startswith("|"):
            header = None
            continue
        first = line.split("|")[1].strip()
        if header is None:
            if i + 1 < len(lines) and lines[i + 1].startswith("|---"):
                header = first
            continue
        if first.startswith("---"):
            continue
        out.setdefault(header, set()).update(re.findall(r"`([^`]+)`", first))
    return out


def test_the_code_scan_finds_what_it_should() -> None:
    # Guards the scan itself: if these went missing the test below would be vacuous.
    assert {"send", "resume", "heartbeat", "typing", "presence.subscribe"} <= code_commands()
    assert {"hello", "ack", "error", "heartbeat_ack", "typing", "presence.changed",
            "channel.resync_required", "message.created"} <= code_events()


def test_every_command_is_documented() -> None:
    documented = doc_tables().get("op", set())
    missing = sorted(code_commands() - documented)
    assert not missing, f"commands missing from an `op` table of docs/protocol.md: {missing}"


def test_every_event_is_documented() -> None:
    documented = doc_tables().get("t", set())
    missing = sorted(code_events() - documented)
    assert not missing, f"events missing from a `t` table of docs/protocol.md: {missing}"


def test_every_connection_state_is_in_the_state_table() -> None:
    states = doc_tables().get("State", set())
    missing = sorted(p.value for p in Phase if p.value not in states)
    assert not missing, f"states missing from the state table of docs/protocol.md: {missing}"
    assert {"upgrading", "draining", "closed"} <= states


def test_the_generated_tables_match_the_protocol_data() -> None:
    """docs/protocol.md's command, event and close-code tables are the ones
    gateway.protocol.spec renders (regenerate with
    ``python -m gateway.protocol.spec --write``)."""
    from gateway.protocol import spec

    text = DOC.read_text()
    assert sorted(spec.regions(text)) == sorted(spec.TABLES), "a generated region is missing"
    assert spec.render_doc(text) == text, (
        "docs/protocol.md differs from gateway.protocol.spec: "
        "run python -m gateway.protocol.spec --write")


def test_the_gateway_dispatches_exactly_the_documented_commands() -> None:
    from gateway.protocol import spec
    from gateway.session import GatewayApp

    app = GatewayApp.__new__(GatewayApp)  # the table only: no services needed
    table = GatewayApp.command_table(app)
    assert set(table) == spec.all_ops()
    assert spec.all_ops() <= code_commands() | set(table)


def test_every_close_code_the_gateway_sends_is_documented() -> None:
    from gateway.protocol import CloseCode, spec

    documented = {c.code for c in spec.CLOSE_CODES}
    sent = set()
    for path in _files("gateway"):
        sent |= set(re.findall(r"CloseCode\.([A-Z_]+)", path.read_text()))
    missing = sorted(n for n in sent if CloseCode[n] not in documented
                     and CloseCode[n] not in (CloseCode.GOING_AWAY, CloseCode.POLICY))
    assert not missing, f"close codes sent but not in the close-code table: {missing}"
