"""Configuration read once from the environment and passed everywhere explicitly."""

from __future__ import annotations

import dataclasses
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

DEFAULT_API_URL = "https://graph.facebook.com/v23.0"
DEFAULT_GRAPH_TIMEOUT = 10.0
DEFAULT_HEARTBEAT = 2.0
DEFAULT_STALE_AFTER = 30.0
DEFAULT_RETENTION_DAYS = 365
# A claim's lease is the Graph call's overall deadline plus this: time to start the call after the claim and to
# write its outcome after the answer (docs/architecture.md#leases).
LEASE_MARGIN = 3.0
# A dispatcher must be able to miss two heartbeats (a slow transaction, a database blip) before it looks dead.
MIN_STALE_HEARTBEATS = 3
MAX_WORKERS = 64

# (variable, default shown in --help, meaning). The single source for `jem-bot --help` and the README.
ENVIRONMENT: tuple[tuple[str, str, str], ...] = (
    ("DATABASE_URL", "unset: embedded PostgreSQL", "postgresql+asyncpg://user:pass@host:port/db"),
    ("JEM_DATA_DIR", "./.jem", "embedded database, demo token"),
    ("JEM_HOST", "127.0.0.1", "where `serve` listens"),
    ("JEM_PORT", "8000", "where `serve` listens"),
    ("WHATSAPP_API_URL", DEFAULT_API_URL, "Graph base URL including the version"),
    ("WHATSAPP_ACCESS_TOKEN", "-", "bearer token for the Graph API"),
    ("WHATSAPP_PHONE_NUMBER_ID", "-", "the sending number's id"),
    ("WHATSAPP_APP_SECRET", "-", "key of X-Hub-Signature-256; comma-separated list for rotation"),
    ("WHATSAPP_VERIFY_TOKEN", "-", "the webhook handshake token"),
    ("WHATSAPP_TEMPLATE", "unset: text messages", "name:language of the approved announcement template"),
    ("JEM_SEND_RATE", "80", "messages per second for the sending number, summed over all workers"),
    ("JEM_GRAPH_TIMEOUT", f"{DEFAULT_GRAPH_TIMEOUT:g}", "seconds to wait for Graph's answer; then `unknown`"),
    ("JEM_DISPATCHER_HEARTBEAT", f"{DEFAULT_HEARTBEAT:g}", "seconds between a dispatcher's heartbeats"),
    ("JEM_DISPATCHER_STALE_AFTER", f"{DEFAULT_STALE_AFTER:g}", "seconds of silence before a dispatcher is deemed dead"),
    (
        "JEM_RETENTION_DAYS",
        f"{DEFAULT_RETENTION_DAYS}",
        "inbound messages and their payloads older than this are purged",
    ),
    ("WHATSAPP_WABA_ID", "-", "the default sender's WhatsApp Business Account id"),
    ("JEM_WORKERS", "one per core", "`serve` processes sharing the port"),
    ("JEM_SECRET_KEY", "-", "≥ 32 characters; encrypts employers' own access tokens (required once one has a sender)"),
    ("JEM_PGBOUNCER", "false", "true when DATABASE_URL is PgBouncer in transaction-pooling mode"),
)

REQUIRED_WHATSAPP = (
    "WHATSAPP_ACCESS_TOKEN",
    "WHATSAPP_PHONE_NUMBER_ID",
    "WHATSAPP_APP_SECRET",
    "WHATSAPP_VERIFY_TOKEN",
)


_BOOLEANS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


class ConfigError(Exception):
    """A setting is missing or malformed; the message is one line a user can act on."""


@dataclass(frozen=True, slots=True)
class Template:
    name: str
    language: str


@dataclass(frozen=True, slots=True)
class Settings:
    database_url: str | None = None
    data_dir: Path = Path(".jem")
    host: str = "127.0.0.1"
    port: int = 8000
    whatsapp_api_url: str = DEFAULT_API_URL
    whatsapp_access_token: str = ""
    whatsapp_phone_number_id: str = ""
    # Several secrets are accepted during a rotation; the first is the current one.
    whatsapp_app_secrets: tuple[str, ...] = ()
    whatsapp_verify_token: str = ""
    whatsapp_template: Template | None = None
    whatsapp_waba_id: str = ""
    send_rate: float = 80.0
    # Dispatcher knobs. Batch size, concurrency, poll interval and attempts are not in the environment (tests
    # and benchmarks tune them); the heartbeat, the stale-after and the Graph timeout are (JEM_DISPATCHER_*,
    # JEM_GRAPH_TIMEOUT), because they decide how fast a crashed worker's sends are accounted for.
    dispatcher_batch_size: int = 200
    # 200 in flight sustain Meta's top tier (1,000 msg/s) at its ~100 ms latency: `jem-bot bench fanout`
    # measured 741 msg/s with 100 in flight and ~1,000 with 200.
    dispatcher_concurrency: int = 200
    dispatcher_poll_interval: float = 0.5
    dispatcher_heartbeat_interval: float = DEFAULT_HEARTBEAT
    # A claimer silent for this long is presumed dead; its in-flight sends become `unknown`.
    dispatcher_stale_after: float = DEFAULT_STALE_AFTER
    # Counted only for recipient-specific refusals (pair rate); a sender-wide outage never spends them.
    max_send_attempts: int = 8
    # The overall deadline of one Graph call; past it the send is ambiguous and its delivery `unknown`.
    graph_timeout: float = DEFAULT_GRAPH_TIMEOUT
    retention_days: int = DEFAULT_RETENTION_DAYS
    # DATABASE_URL points at PgBouncer in transaction-pooling mode: no reused prepared statements, no LISTEN.
    pgbouncer: bool = False
    # `serve` processes sharing the port; None: one per core.
    workers: int | None = None
    # Keys derived from it encrypt employers' own access tokens (bot/crypto.py); "" when not configured.
    secret_key: str = ""

    @property
    def server_processes(self) -> int:
        return self.workers or os.cpu_count() or 1

    # Not in the environment: the defaults are right for production; tests shrink them to run in seconds.
    lease_margin: float = LEASE_MARGIN
    sender_backoff_base: float = 1.0
    sender_backoff_cap: float = 15.0

    @property
    def lease_seconds(self) -> float:
        """How long a claim holds its row: the Graph call's deadline plus the margin."""
        return self.graph_timeout + self.lease_margin

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ

        def get(name: str) -> str:
            return env.get(name, "").strip()

        port_raw = get("JEM_PORT") or "8000"
        if not port_raw.isdigit() or not 0 < int(port_raw) < 65536:
            raise ConfigError(f"JEM_PORT must be a port number 1-65535, got {port_raw!r}")
        rate_raw = get("JEM_SEND_RATE") or "80"
        try:
            rate = float(rate_raw)
        except ValueError:
            raise ConfigError(f"JEM_SEND_RATE must be a number of messages per second, got {rate_raw!r}") from None
        if not 0 < rate <= 10_000:
            raise ConfigError(f"JEM_SEND_RATE must be between 0 and 10000 messages per second, got {rate_raw!r}")

        graph_timeout = _seconds(get, "JEM_GRAPH_TIMEOUT", DEFAULT_GRAPH_TIMEOUT)
        heartbeat = _seconds(get, "JEM_DISPATCHER_HEARTBEAT", DEFAULT_HEARTBEAT)
        stale_after = _seconds(get, "JEM_DISPATCHER_STALE_AFTER", DEFAULT_STALE_AFTER)
        if stale_after < MIN_STALE_HEARTBEATS * heartbeat:
            # A live dispatcher that misses a heartbeat or two (a slow transaction, a database blip) would look
            # dead, and the reaper would turn its in-flight sends into `unknown`.
            raise ConfigError(
                f"JEM_DISPATCHER_STALE_AFTER ({stale_after:g} s) must be at least {MIN_STALE_HEARTBEATS} times "
                f"JEM_DISPATCHER_HEARTBEAT ({heartbeat:g} s)"
            )
        retention_raw = get("JEM_RETENTION_DAYS") or str(DEFAULT_RETENTION_DAYS)
        if not retention_raw.isdigit() or not 1 <= int(retention_raw) <= 36_500:
            raise ConfigError(
                f"JEM_RETENTION_DAYS must be a whole number of days from 1 to 36500, got {retention_raw!r}"
            )

        template: Template | None = None
        if raw := get("WHATSAPP_TEMPLATE"):
            name, sep, language = raw.partition(":")
            if not sep or not name.strip() or not language.strip() or ":" in language:
                raise ConfigError(
                    f"WHATSAPP_TEMPLATE must look like name:language (e.g. staff_notice:en_US), got {raw!r}"
                )
            template = Template(name.strip(), language.strip())

        database_url = get("DATABASE_URL") or None
        if database_url is not None:
            database_url = normalise_database_url(database_url)

        api_url = (get("WHATSAPP_API_URL") or DEFAULT_API_URL).rstrip("/")
        if not api_url.startswith(("http://", "https://")):
            raise ConfigError(f"WHATSAPP_API_URL must be an http(s) URL, got {api_url!r}")

        workers_raw = get("JEM_WORKERS")
        if workers_raw and (not workers_raw.isdigit() or not 1 <= int(workers_raw) <= MAX_WORKERS):
            raise ConfigError(f"JEM_WORKERS must be a number of processes from 1 to {MAX_WORKERS}, got {workers_raw!r}")
        secret_key = env.get("JEM_SECRET_KEY", "")
        if secret_key and len(secret_key) < 32:
            raise ConfigError("JEM_SECRET_KEY must be a secret string of at least 32 characters")
        pgbouncer_raw = get("JEM_PGBOUNCER").lower() or "false"
        if pgbouncer_raw not in _BOOLEANS:
            raise ConfigError(f"JEM_PGBOUNCER must be true or false, got {get('JEM_PGBOUNCER')!r}")

        return cls(
            database_url=database_url,
            data_dir=Path(get("JEM_DATA_DIR") or ".jem"),
            host=get("JEM_HOST") or "127.0.0.1",
            port=int(port_raw),
            whatsapp_api_url=api_url,
            whatsapp_access_token=get("WHATSAPP_ACCESS_TOKEN"),
            whatsapp_phone_number_id=get("WHATSAPP_PHONE_NUMBER_ID"),
            whatsapp_app_secrets=tuple(s.strip() for s in get("WHATSAPP_APP_SECRET").split(",") if s.strip()),
            whatsapp_verify_token=get("WHATSAPP_VERIFY_TOKEN"),
            whatsapp_template=template,
            whatsapp_waba_id=get("WHATSAPP_WABA_ID"),
            send_rate=rate,
            graph_timeout=graph_timeout,
            dispatcher_heartbeat_interval=heartbeat,
            dispatcher_stale_after=stale_after,
            retention_days=int(retention_raw),
            pgbouncer=_BOOLEANS[pgbouncer_raw],
            workers=int(workers_raw) if workers_raw else None,
            secret_key=secret_key,
        )

    def replace(self, **changes: object) -> Settings:
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    def require_whatsapp(self, *, simulator_flag: bool = False) -> None:
        """Refuse to run a sender or webhook without credentials (names only, never values).

        ``simulator_flag`` says the command has `--simulator` (only `serve` does), so the hint can offer it.
        """
        values = {
            "WHATSAPP_ACCESS_TOKEN": self.whatsapp_access_token,
            "WHATSAPP_PHONE_NUMBER_ID": self.whatsapp_phone_number_id,
            "WHATSAPP_APP_SECRET": ",".join(self.whatsapp_app_secrets),
            "WHATSAPP_VERIFY_TOKEN": self.whatsapp_verify_token,
        }
        missing = [name for name in REQUIRED_WHATSAPP if not values[name]]
        if missing:
            hint = (
                ", or pass --simulator to use the built-in WhatsApp simulator"
                if simulator_flag
                else " (without WhatsApp: any values, and WHATSAPP_API_URL pointing at a running `jem-bot simulator`)"
            )
            raise ConfigError(f"missing {', '.join(missing)}: set them in the environment{hint}")

    def __repr__(self) -> str:
        # Secrets must never reach logs or tracebacks through a repr.
        return f"Settings(database={'set' if self.database_url else 'embedded'}, data_dir={self.data_dir})"


def _seconds(get: Callable[[str], str], name: str, default: float) -> float:
    """A positive, finite number of seconds from the environment, or ``default`` when the variable is unset."""
    raw = get(name)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number of seconds, got {raw!r}") from None
    # `not 0 < value` also rejects nan; inf would mean "never", which is never what an operator wants here.
    if not 0 < value < math.inf:
        raise ConfigError(f"{name} must be a number of seconds greater than 0, got {raw!r}")
    return value


def normalise_database_url(url: str) -> str:
    """Accept the URLs people paste (postgres://, postgresql://, another driver's) and pin the asyncpg driver.

    The URL is parsed here so that a malformed one is a one-line config error, never a traceback later; no
    message repeats the URL, which may carry a password.
    """
    scheme, sep, rest = url.partition("://")
    if not sep or not re.fullmatch(r"postgres(ql)?(\+[a-z0-9_]+)?", scheme):
        # Without "://" the value may be anything (a bare password pasted by mistake): show none of it.
        got = f" (its scheme is {scheme!r})" if sep else ""
        raise ConfigError(
            f"DATABASE_URL is not a PostgreSQL URL{got}: set it to postgresql://user:password@host:port/database"
        )
    normalised = "postgresql+asyncpg://" + rest
    from sqlalchemy.engine import make_url  # here: the settings module stays light for everything else
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(normalised)
    except (ArgumentError, ValueError):
        raise ConfigError(
            "DATABASE_URL is not a valid URL: expected postgresql://user:password@host:port/database "
            "(percent-encode special characters in the password)"
        ) from None
    if not parsed.database:
        raise ConfigError("DATABASE_URL names no database: expected postgresql://user:password@host:port/database")
    return normalised
