"""What /openapi.json says beyond FastAPI's generator: exact integer bounds
and the links between operations.

Links (OpenAPI 3 ``links``) say which id in one operation's answer feeds
which path parameter of others: creating a workspace gives the
``workspace_id`` of every route under ``/v1/workspaces/{workspace_id}``
that needs no other id, creating a channel the ``channel_id`` of every
route under it that needs no other id (``.../messages/{message_id}`` routes
are linked from posting the message), and so on for invites and files.
Clients and tools can follow them; schemathesis' stateful phase
(``tests/api/test_schemathesis.py``) chains create workspace -> channel ->
message -> reactions, pins, threads with them.  They are derived from
``PRODUCERS`` and the paths, so a new route under a linked path is linked
without listing it here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI

from api.params import INT64_MAX

WS = "/v1/workspaces/{workspace_id}"
CHANNEL = WS + "/channels/{channel_id}"
_FROM_PATH = "$request.path."

#: (method, path, status) of an operation that creates something; the path
#: under which its id is a parameter; each parameter there and where its
#: value comes from (runtime expressions, OpenAPI 3.1 section 4.8.20.4).
PRODUCERS: tuple[tuple[str, str, str, str, dict[str, str]], ...] = (
    ("post", "/v1/workspaces", "201", WS,
     {"workspace_id": "$response.body#/id"}),
    ("post", WS + "/channels", "201", CHANNEL,
     {"workspace_id": _FROM_PATH + "workspace_id", "channel_id": "$response.body#/id"}),
    ("post", CHANNEL + "/messages", "201", CHANNEL + "/messages/{message_id}",
     {"workspace_id": _FROM_PATH + "workspace_id", "channel_id": _FROM_PATH + "channel_id",
      "message_id": "$response.body#/id"}),
    ("post", WS + "/invites", "201", WS + "/invites/{invite_id}",
     {"workspace_id": _FROM_PATH + "workspace_id", "invite_id": "$response.body#/invite/id"}),
    ("post", WS + "/files", "201", WS + "/files/{file_id}",
     {"workspace_id": _FROM_PATH + "workspace_id", "file_id": "$response.body#/file/id"}),
)


def _integral_bounds(node: Any) -> None:
    """Integer bounds back to integers.  FastAPI's OpenAPI model types
    ``minimum``/``maximum`` as float, so a body field's ``le=2**63 - 1``
    came out as 9.223372036854776e18, i.e. 2**63: one more than the field
    accepts.  The only float that large is that bound (``api.params``)."""
    if isinstance(node, dict):
        if node.get("type") == "integer":
            for key in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
                value = node.get(key)
                if isinstance(value, float):
                    node[key] = INT64_MAX if value >= INT64_MAX else int(value)
        for child in node.values():
            _integral_bounds(child)
    elif isinstance(node, list):
        for child in node:
            _integral_bounds(child)


def _add_links(spec: dict[str, Any]) -> None:
    paths: dict[str, dict[str, Any]] = spec["paths"]
    for method, path, status, under, params in PRODUCERS:
        response = paths[path][method]["responses"][status]
        links = response.setdefault("links", {})
        for target, ops in paths.items():
            if target != under and not target.startswith(under + "/"):
                continue
            for target_method, op in ops.items():
                declared = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
                if not declared <= params.keys():
                    continue  # it needs an id this answer does not give (a message's, say)
                links[op["operationId"]] = {
                    "operationId": op["operationId"],
                    "parameters": {k: v for k, v in params.items() if k in declared},
                    "description": f"{target_method.upper()} {target} with the new id",
                }


def exact_openapi(app: FastAPI) -> Callable[[], dict[str, Any]]:
    """``app.openapi`` with the additions above (generated once, cached)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            spec = generate()  # caches it in app.openapi_schema
            _integral_bounds(spec)
            _add_links(spec)
        return app.openapi_schema or {}

    return openapi
