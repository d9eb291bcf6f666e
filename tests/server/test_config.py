from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from parley.config import SETTINGS_DOC, ConfigError, Settings
from server.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]


def test_environment_sets_every_field_and_flags_win() -> None:
    s = load_settings({"api_port": 9001, "host": None},
                      {"PARLEY_API_PORT": "7000", "PARLEY_GATEWAY_PORT": "7001",
                       "PARLEY_COMMIT_WINDOW_MS": "2.5", "PARLEY_DATA_DIR": "/tmp/x"})
    assert s.api_port == 9001  # flag beats environment
    assert s.gateway_port == 7001
    assert s.commit_window_ms == 2.5
    assert s.data_dir == Path("/tmp/x")
    assert s.host == "127.0.0.1"  # an unset flag falls back


@pytest.mark.parametrize(("env", "needle"), [
    ({"PARLEY_API_PORT": "eighty"}, "PARLEY_API_PORT"),
    ({"PARLEY_API_PORT": "70000"}, "api_port"),
    ({"PARLEY_LOG_LEVEL": "loud"}, "log_level"),
    ({"PARLEY_ACCESS_TOKEN_TTL_S": "1"}, "access_token_ttl_s"),
])
def test_bad_values_name_the_setting(env: dict[str, str], needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        load_settings(None, env)


def test_readme_config_table_lists_every_setting() -> None:
    readme = (ROOT / "README.md").read_text()
    for f in dataclasses.fields(Settings):
        if f.name == "extra":
            continue
        assert f.name in SETTINGS_DOC, f"{f.name} has no description"
        assert f"`PARLEY_{f.name.upper()}`" in readme, f"README lacks PARLEY_{f.name.upper()}"


def test_urls_split_on_commas() -> None:
    s = Settings(database_url="postgresql://a/x, postgresql://b/y", redis_url="")
    assert s.database_urls == ["postgresql://a/x", "postgresql://b/y"]
    assert s.redis_urls == []
