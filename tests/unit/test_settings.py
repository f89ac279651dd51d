from __future__ import annotations

from pathlib import Path

import pytest

from bot.settings import DEFAULT_API_URL, ConfigError, Settings, Template, normalise_database_url

FULL = {
    "WHATSAPP_ACCESS_TOKEN": "graph-token",
    "WHATSAPP_PHONE_NUMBER_ID": "100000000000001",
    "WHATSAPP_APP_SECRET": "secret",
    "WHATSAPP_VERIFY_TOKEN": "verify",
}


def test_defaults() -> None:
    settings = Settings.from_env({})
    assert settings.database_url is None
    assert settings.data_dir == Path(".jem")
    assert (settings.host, settings.port) == ("127.0.0.1", 8000)
    assert settings.whatsapp_api_url == DEFAULT_API_URL
    assert settings.whatsapp_template is None
    assert settings.send_rate == 80.0
    assert settings.whatsapp_app_secrets == ()
    assert settings.graph_timeout == 10.0
    assert settings.dispatcher_heartbeat_interval == 2.0
    assert settings.dispatcher_stale_after == 30.0


def test_values_are_read_and_trimmed() -> None:
    settings = Settings.from_env(
        {
            **FULL,
            "JEM_HOST": " 0.0.0.0 ",
            "JEM_PORT": " 9001 ",
            "JEM_SEND_RATE": "12.5",
            "JEM_DATA_DIR": "/var/lib/jem",
            "WHATSAPP_API_URL": "http://127.0.0.1:9000/v23.0/",
            "WHATSAPP_TEMPLATE": " staff_notice : en_US ",
            "JEM_GRAPH_TIMEOUT": " 1.5 ",
            "JEM_DISPATCHER_HEARTBEAT": "0.25",
            "JEM_DISPATCHER_STALE_AFTER": "3",
        }
    )
    assert (settings.host, settings.port, settings.send_rate) == ("0.0.0.0", 9001, 12.5)
    assert settings.graph_timeout == 1.5
    assert (settings.dispatcher_heartbeat_interval, settings.dispatcher_stale_after) == (0.25, 3.0)
    assert settings.data_dir == Path("/var/lib/jem")
    assert settings.whatsapp_api_url == "http://127.0.0.1:9000/v23.0"
    assert settings.whatsapp_template == Template("staff_notice", "en_US")
    settings.require_whatsapp()


def test_app_secrets_are_a_comma_separated_list() -> None:
    settings = Settings.from_env({"WHATSAPP_APP_SECRET": " new-secret , old-secret,, "})
    assert settings.whatsapp_app_secrets == ("new-secret", "old-secret")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("postgresql://u:p@h:5432/db", "postgresql+asyncpg://u:p@h:5432/db"),
        ("postgres://u:p@h/db", "postgresql+asyncpg://u:p@h/db"),
        ("postgresql+asyncpg://u@h/db", "postgresql+asyncpg://u@h/db"),
        ("postgresql+psycopg://u@h/db", "postgresql+asyncpg://u@h/db"),
        ("postgresql+psycopg2://u@h/db", "postgresql+asyncpg://u@h/db"),
        ("postgresql://u:p%40ss@h/db", "postgresql+asyncpg://u:p%40ss@h/db"),
        ("postgresql://postgres@/jem?host=/tmp/sock", "postgresql+asyncpg://postgres@/jem?host=/tmp/sock"),
    ],
)
def test_database_url_scheme_is_normalised(raw: str, expected: str) -> None:
    assert normalise_database_url(raw) == expected
    assert Settings.from_env({"DATABASE_URL": f"  {raw} "}).database_url == expected


@pytest.mark.parametrize(
    ("environ", "name"),
    [
        ({"JEM_PORT": "eighty"}, "JEM_PORT"),
        ({"JEM_PORT": "0"}, "JEM_PORT"),
        ({"JEM_PORT": "65536"}, "JEM_PORT"),
        ({"JEM_PORT": "-1"}, "JEM_PORT"),
        ({"JEM_PORT": "80\n80"}, "JEM_PORT"),
        ({"JEM_SEND_RATE": "fast"}, "JEM_SEND_RATE"),
        ({"JEM_SEND_RATE": "0"}, "JEM_SEND_RATE"),
        ({"JEM_SEND_RATE": "-5"}, "JEM_SEND_RATE"),
        ({"JEM_SEND_RATE": "nan"}, "JEM_SEND_RATE"),
        ({"JEM_SEND_RATE": "inf"}, "JEM_SEND_RATE"),
        ({"JEM_GRAPH_TIMEOUT": "soon"}, "JEM_GRAPH_TIMEOUT"),
        ({"JEM_GRAPH_TIMEOUT": "0"}, "JEM_GRAPH_TIMEOUT"),
        ({"JEM_GRAPH_TIMEOUT": "-1"}, "JEM_GRAPH_TIMEOUT"),
        ({"JEM_GRAPH_TIMEOUT": "nan"}, "JEM_GRAPH_TIMEOUT"),
        ({"JEM_GRAPH_TIMEOUT": "inf"}, "JEM_GRAPH_TIMEOUT"),
        ({"JEM_DISPATCHER_STALE_AFTER": "half a minute"}, "JEM_DISPATCHER_STALE_AFTER"),
        ({"JEM_DISPATCHER_STALE_AFTER": "0"}, "JEM_DISPATCHER_STALE_AFTER"),
        ({"JEM_DISPATCHER_STALE_AFTER": "-30"}, "JEM_DISPATCHER_STALE_AFTER"),
        ({"JEM_DISPATCHER_STALE_AFTER": "nan"}, "JEM_DISPATCHER_STALE_AFTER"),
        ({"JEM_DISPATCHER_HEARTBEAT": "0"}, "JEM_DISPATCHER_HEARTBEAT"),
        ({"JEM_DISPATCHER_HEARTBEAT": "-inf"}, "JEM_DISPATCHER_HEARTBEAT"),
        # A heartbeat no shorter than the stale-after would make every live dispatcher look dead.
        ({"JEM_DISPATCHER_HEARTBEAT": "5", "JEM_DISPATCHER_STALE_AFTER": "5"}, "JEM_DISPATCHER_STALE_AFTER"),
        ({"JEM_DISPATCHER_STALE_AFTER": "1"}, "JEM_DISPATCHER_HEARTBEAT"),
        ({"WHATSAPP_TEMPLATE": "staff_notice"}, "WHATSAPP_TEMPLATE"),
        ({"WHATSAPP_TEMPLATE": ":en_US"}, "WHATSAPP_TEMPLATE"),
        ({"WHATSAPP_TEMPLATE": "staff_notice:"}, "WHATSAPP_TEMPLATE"),
        ({"WHATSAPP_TEMPLATE": "staff_notice:en_US:extra"}, "WHATSAPP_TEMPLATE"),
        ({"WHATSAPP_API_URL": "graph.facebook.com/v23.0"}, "WHATSAPP_API_URL"),
        ({"DATABASE_URL": "mysql://user:hunter2@h/db"}, "DATABASE_URL"),
        ({"DATABASE_URL": "sqlite:///jem.db"}, "DATABASE_URL"),
        ({"DATABASE_URL": "postgresql://u:hunter2@host:notaport/db"}, "DATABASE_URL"),
        ({"DATABASE_URL": "postgresql://u:hunter2@host:5432"}, "DATABASE_URL"),
        ({"DATABASE_URL": "postgresql://"}, "DATABASE_URL"),
        ({"DATABASE_URL": "u:hunter2@host/db"}, "DATABASE_URL"),
        ({"DATABASE_URL": "hunter2"}, "DATABASE_URL"),
    ],
)
def test_bad_values_raise_one_line_config_errors(environ: dict[str, str], name: str) -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env(environ)
    message = str(info.value)
    assert name in message
    assert "\n" not in message
    assert "hunter2" not in message


def test_missing_whatsapp_settings_are_named_without_values() -> None:
    settings = Settings.from_env({"WHATSAPP_ACCESS_TOKEN": "graph-token-value", "WHATSAPP_APP_SECRET": "s3cr3t"})
    with pytest.raises(ConfigError) as info:
        settings.require_whatsapp()
    message = str(info.value)
    assert "WHATSAPP_PHONE_NUMBER_ID" in message
    assert "WHATSAPP_VERIFY_TOKEN" in message
    assert "WHATSAPP_ACCESS_TOKEN" not in message
    assert "graph-token-value" not in message
    assert "s3cr3t" not in message
    assert "\n" not in message


def test_missing_whatsapp_settings_offer_simulator_flag_only_where_it_exists() -> None:
    # `serve` has --simulator; `worker` does not, so its hint must not send the user to a flag it rejects.
    settings = Settings.from_env({})
    with pytest.raises(ConfigError) as serve:
        settings.require_whatsapp(simulator_flag=True)
    assert "--simulator" in str(serve.value)
    with pytest.raises(ConfigError) as worker:
        settings.require_whatsapp()
    assert "--simulator" not in str(worker.value)
    assert "WHATSAPP_API_URL" in str(worker.value)
    assert "\n" not in str(worker.value)


def test_repr_hides_secrets() -> None:
    settings = Settings.from_env({**FULL, "DATABASE_URL": "postgresql://u:hunter2@h/db"})
    for secret in ("graph-token", "secret", "verify", "hunter2"):
        assert secret not in repr(settings)
        assert secret not in str(settings)


def test_replace_returns_a_changed_copy() -> None:
    settings = Settings.from_env({})
    changed = settings.replace(port=9000)
    assert changed.port == 9000
    assert settings.port == 8000
