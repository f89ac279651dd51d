"""`jem-bot simulator`: run the WhatsApp Cloud API stand-in under uvicorn."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from bot.runtime import check_listen_address, listen_settings, stop_signals_exit_zero
from bot.settings import ConfigError, Settings

if TYPE_CHECKING:
    from bot.simulator.phone import SimulatorConfig

RATES = (
    ("--ack-rate", 0.6, "share of employees who acknowledge after reading"),
    ("--reply-rate", 0.1, "share who reply with free text"),
    ("--stop-rate", 0.0, "share who send STOP"),
    ("--duplicate-rate", 0.0, "share of status callbacks posted twice"),
    ("--fault-throttle", 0.0, "share of sends answered 130429 (not accepted)"),
    ("--fault-pair-rate", 0.0, "share of sends answered 131056 (not accepted)"),
    ("--fault-undeliverable", 0.0, "share of sends accepted, then a `failed` status 131026"),
    ("--fault-5xx", 0.0, "share of sends answered HTTP 500 (not accepted)"),
    ("--fault-timeout", 0.0, "share of sends accepted whose answer is held past the client's timeout"),
    ("--username-rate", 0.0, "share of recipients with a username: no `from`/`wa_id`, only their BSUID"),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="listen address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=9000, help="listen port (default 9000)")
    parser.add_argument("--webhook", help="where status callbacks and replies are posted, e.g. "
                        "http://127.0.0.1:8000/webhooks/whatsapp")  # fmt: skip
    parser.add_argument("--app-secret", help="signs callbacks (default: WHATSAPP_APP_SECRET)")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="delay before each answer")
    parser.add_argument("--shuffle", action="store_true", help="post some status callbacks out of order")
    parser.add_argument("--seed", type=int, help="make the random choices reproducible")
    parser.add_argument("--timeout-hold", type=float, default=30.0, help="seconds a --fault-timeout answer is held")
    parser.add_argument(
        "--status-delay",
        type=float,
        default=0.05,
        metavar="SECONDS",
        help="pause before each status callback (default 0.05); longer than the sender's JEM_GRAPH_TIMEOUT, "
        "a timed-out send becomes `unknown` before its `sent` status resolves it",
    )
    parser.add_argument(
        "--number",
        action="append",
        default=[],
        metavar="ID:TOKEN[:RATE]",
        help="play this business number (repeatable): sends to phone_number_id ID need bearer TOKEN (else 190), "
        "at most RATE messages/second (else 130429; default unlimited); any other id but the default "
        "100000000000001 (any token) is then 100. Without --number: any id, any token",
    )
    parser.add_argument(
        "--templates",
        metavar="FILE",
        help="the message templates of every business account: a JSON list in the shape GET "
        "/{waba_id}/message_templates lists them (default: a demo catalogue, bot/simulator/templates.json)",
    )
    parser.add_argument(
        "--enforce-window",
        action="store_true",
        help="refuse (131047) a non-template send to someone who has not written to that number in 24 h",
    )
    for flag, default, meaning in RATES:
        parser.add_argument(
            flag, type=float, default=default, metavar="RATE", help=f"{meaning} (0..1, default {default})"
        )


def config_from_args(settings: Settings, args: argparse.Namespace) -> SimulatorConfig:
    # Imported here: the simulator's modules bring in httpx, which `jem-bot simulator --help` does not need.
    from bot.simulator.catalogue import load_catalogue
    from bot.simulator.numbers import SimulatedNumber
    from bot.simulator.phone import SimulatorConfig

    numbers: list[SimulatedNumber] = []
    for spec in args.number:
        try:
            number = SimulatedNumber.parse(spec)
        except ValueError as exc:
            raise ConfigError(f"--number {_masked(spec)}: {exc}") from None
        if any(known.phone_number_id == number.phone_number_id for known in numbers):
            raise ConfigError(f"--number {number.phone_number_id} is given twice")
        numbers.append(number)
    rates = {flag[2:].replace("-", "_"): getattr(args, flag[2:].replace("-", "_")) for flag, _, _ in RATES}
    for name, value in rates.items():
        if not 0.0 <= value <= 1.0:
            raise ConfigError(f"--{name.replace('_', '-')} must be a rate between 0 and 1, got {value}")
    if args.latency_ms < 0:
        raise ConfigError(f"--latency-ms must not be negative, got {args.latency_ms}")
    if not 0 <= args.status_delay <= 3600:
        raise ConfigError(f"--status-delay must be 0-3600 seconds, got {args.status_delay}")
    templates = None
    if args.templates is not None:
        try:
            templates = load_catalogue(Path(args.templates))
        except ValueError as exc:
            raise ConfigError(f"--templates {args.templates}: {exc}") from None
    secret = args.app_secret or (settings.whatsapp_app_secrets[0] if settings.whatsapp_app_secrets else "")
    if args.webhook and not secret:
        raise ConfigError("callbacks must be signed: pass --app-secret or set WHATSAPP_APP_SECRET")
    if args.webhook and not args.webhook.startswith(("http://", "https://")):
        raise ConfigError(f"--webhook must be an http(s) URL, got {args.webhook!r}")
    return SimulatorConfig(
        webhook=args.webhook,
        app_secret=secret,
        latency_ms=args.latency_ms,
        shuffle=args.shuffle,
        seed=args.seed,
        timeout_hold_s=args.timeout_hold,
        step_delay_s=args.status_delay,
        numbers=tuple(numbers),
        templates=templates,
        enforce_window=args.enforce_window,
        **rates,
    )


def _masked(spec: str) -> str:
    """A `--number` value fit for an error message: its id, the token masked, its rate."""
    parts = spec.split(":")
    if len(parts) >= 2:
        parts[1] = "***"
    return ":".join(parts)


def run(settings: Settings, args: argparse.Namespace) -> None:
    import uvicorn

    from bot.logs import configure_logging, uvicorn_log_config
    from bot.simulator.app import KEEP_ALIVE_SECONDS, create_simulator_app
    from bot.simulator.outage import OutageServer

    # --host and --port have defaults of their own: JEM_HOST and JEM_PORT are where `serve` listens.
    listen = listen_settings(settings, args.host, args.port)
    config = config_from_args(settings, args)
    check_listen_address(listen.host, listen.port, environment=False)
    configure_logging()
    where = f"http://{listen.host}:{listen.port}"
    target = f"callbacks to {config.webhook}" if config.webhook else "no callbacks (no --webhook)"
    if config.numbers:
        shown = [f"{n.phone_number_id}" + (f" ({n.rate:g}/s)" if n.rate else "") for n in config.numbers]
        target += f"; numbers {', '.join(shown)} and the default"
    if config.templates is not None:
        target += f"; {len(config.templates)} templates from {args.templates}"
    if config.enforce_window:
        target += "; 24-hour window enforced"
    print(f"WhatsApp simulator listening on {where} (set WHATSAPP_API_URL={where}/v23.0); {target}", flush=True)
    app = create_simulator_app(config)
    server = OutageServer(
        uvicorn.Config(
            app,
            host=listen.host,
            port=listen.port,
            log_config=uvicorn_log_config(),
            access_log=False,
            timeout_keep_alive=KEEP_ALIVE_SECONDS,
        ),
        app.state.outage,
    )
    with stop_signals_exit_zero():
        server.run()
