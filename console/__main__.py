"""`jem-console [--api-url URL] [--token T]`: the operator console.

Where the URL and token come from, first match wins: the flags; JEM_API_URL / JEM_API_TOKEN; the file
the demo saves, `$JEM_DATA_DIR/demo.json` (JEM_DATA_DIR defaults to ./.jem); for the URL only,
http://127.0.0.1:8000.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

DEFAULT_API_URL = "http://127.0.0.1:8000"


class ConfigError(Exception):
    """The console cannot start; the message says how to fix it."""


def _demo_file(env: Mapping[str, str]) -> dict[str, str]:
    path = Path(env.get("JEM_DATA_DIR") or ".jem") / "demo.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}; delete it or pass --api-url and --token") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path} is not a JSON object; delete it or pass --api-url and --token")
    return {k: v for k, v in data.items() if isinstance(k, str) and isinstance(v, str)}


def resolve(args: argparse.Namespace, env: Mapping[str, str]) -> tuple[str, str]:
    """The API URL and token to use, or ConfigError."""
    demo = _demo_file(env)
    url = args.api_url or env.get("JEM_API_URL") or demo.get("api_url") or DEFAULT_API_URL
    token = args.token or env.get("JEM_API_TOKEN") or demo.get("token")
    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"API URL {url!r} must start with http:// or https://")
    if not token:
        raise ConfigError(
            "no API token: pass --token, set JEM_API_TOKEN, or run `uv run jem-bot demo` "
            "(or `jem-bot token create --employer SLUG`)"
        )
    return url.rstrip("/"), token


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="jem-console", description="The jem-bot operator console.")
    p.add_argument("--api-url", help=f"API base URL (env JEM_API_URL; default: the demo's, else {DEFAULT_API_URL})")
    p.add_argument("--token", help="API bearer token (env JEM_API_TOKEN; default: the demo's)")
    return p


def main(argv: Sequence[str] | None = None) -> None:
    args = parser().parse_args(argv)
    try:
        url, token = resolve(args, os.environ)
    except ConfigError as exc:
        print(f"jem-console: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    # Imported late so that `--help` and configuration errors answer instantly.
    from console.api import BotApi
    from console.app import make_console

    make_console(BotApi.connect(url, token), owns_api=True).run()


if __name__ == "__main__":
    main()
