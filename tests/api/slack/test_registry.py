"""The method table against slack_sdk and the docs: every method that
slack_sdk's AsyncWebClient sends as GET answers GET here, and docs/apps.md
documents every registered method."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

from slack_sdk.web import async_client

from api.slack import routes
from api.slack.registry import REGISTRY

ROOT = Path(__file__).resolve().parents[3]


def test_methods_async_web_client_sends_as_get_answer_get() -> None:
    assert routes.TAG  # the method modules are registered once routes is imported
    source = inspect.getsource(async_client)
    gets = set(re.findall(r'api_call\(\s*"([A-Za-z.]+)",\s*http_verb="GET"', source))
    ours_as_get = sorted(name for name in REGISTRY if name in gets)
    assert ours_as_get, "the pattern no longer finds AsyncWebClient's GET methods"
    refused = [name for name in ours_as_get if "GET" not in REGISTRY[name].verbs]
    assert not refused, f"AsyncWebClient sends these as GET: {refused}"


def test_docs_list_every_method() -> None:
    doc = (ROOT / "docs" / "apps.md").read_text()
    missing = [name for name in REGISTRY if f"`{name}`" not in doc]
    assert not missing, f"docs/apps.md lacks {missing}"
