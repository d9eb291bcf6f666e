"""App manifests (parley/actions/manifest.py): what is read, what is kept
verbatim, and errors that name the field."""

from __future__ import annotations

import json

import pytest

from parley.actions import manifest
from parley.errors import InvalidInput


def _m(**settings: object) -> dict[str, object]:
    return {"display_information": {"name": "Bot"},
            "oauth_config": {"scopes": {"bot": ["chat:write", "chat:write", "commands"],
                                        "user": ["users:read"]},
                             "redirect_urls": ["https://x.io/oauth"]},
            "features": {"shortcuts": [{"name": "kept"}],
                         "slash_commands": [{"command": "/Go", "url": "https://x.io/go",
                                             "description": "go", "should_escape": True}]},
            "settings": {"event_subscriptions": {"request_url": "https://x.io/ev",
                                                 "bot_events": ["app_mention"]},
                         "interactivity": {"is_enabled": True,
                                           "request_url": "https://x.io/act"},
                         "org_deploy_enabled": False, **settings}}


def test_reads_what_part_two_needs_and_keeps_the_rest() -> None:
    m = manifest.parse(_m())
    assert (m.name, m.bot_name, m.bot_scopes, m.user_scopes) == (
        "Bot", "Bot", ("chat:write", "commands"), ("users:read",))
    assert m.event_request_url == "https://x.io/ev" and m.bot_events == ("app_mention",)
    assert m.interactivity_enabled and m.interactivity_url == "https://x.io/act"
    assert [c.command for c in m.slash_commands] == ["/go"] and m.slash_commands[0].should_escape
    assert m.redirect_urls == ("https://x.io/oauth",) and not m.socket_mode
    assert json.loads(m.to_json())["features"]["shortcuts"] == [{"name": "kept"}]
    assert manifest.parse(m.to_json()) == m  # stored text parses back the same
    assert not m.webhooks_allowed


@pytest.mark.parametrize(("change", "message"), [
    ({"features": {"slash_commands": [{"command": "/a", "url": "https://x.io", "description":
                                       "d"}, {"command": "/A", "url": "https://x.io",
                                              "description": "d"}]}},
     "features.slash_commands[1].command: /a is listed twice"),
    ({"features": {"bot_user": {"display_name": 5}}}, "features.bot_user.display_name"),
    ({"oauth_config": {"scopes": {"bot": "chat:write"}}}, "oauth_config.scopes.bot"),
    ({"oauth_config": {"redirect_urls": ["javascript:alert(1)"]}},
     "oauth_config.redirect_urls[0]"),
    ({"settings": {"event_subscriptions": {"request_url": "https://x.io",
                                           "bot_events": ["Not An Event"]}}},
     "settings.event_subscriptions.bot_events[0]"),
    ({"settings": {"interactivity": {"is_enabled": True}}},
     "settings.interactivity.request_url"),
    ({"display_information": {"name": "tab\there"}}, "control characters"),
])
def test_errors_name_the_field(change: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidInput) as err:
        manifest.parse({**_m(), **change})
    assert err.value.code == "invalid_manifest" and message in err.value.message


@pytest.mark.parametrize("raw", ["not json", "[]", 5, {"display_information": "x"}])
def test_not_a_manifest(raw: object) -> None:
    with pytest.raises(InvalidInput):
        manifest.parse(raw)


def test_socket_mode_needs_no_urls_and_size_is_bounded() -> None:
    m = manifest.parse({"display_information": {"name": "S"},
                        "settings": {"socket_mode_enabled": True,
                                     "event_subscriptions": {"bot_events": ["app_mention"]}}})
    assert m.socket_mode and m.event_request_url is None
    huge = {"display_information": {"name": "S", "long": "x" * manifest.MANIFEST_BYTES_MAX}}
    with pytest.raises(InvalidInput, match="at most"):
        manifest.parse(huge)
