"""The template catalogue: each business account's approved WhatsApp templates, read from Graph
(docs/architecture.md#templates, docs/whatsapp.md#message-templates).

Outside the 24-hour customer-service window Meta delivers only approved templates. Graph lists an account's
templates at `GET /{waba_id}/message_templates` (paged); we keep one row per (account, name, language) and what
sending needs from it: the header's format, how many body parameters, the buttons. Synced on demand (`POST
/templates/sync`), when first needed, and hourly.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import msgspec
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.db.queries import query

log = logging.getLogger("jem.templates")

HEADER_FORMATS = ("none", "text", "image", "document", "video")
MEDIA_HEADERS = ("image", "document", "video")
# Graph caps `limit` at 100 for this edge; a catalogue of 250 translations is three pages.
PAGE_SIZE = 100
MAX_PAGES = 100
SYNC_EVERY_SECONDS = 3600.0
_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z0-9_]+)\s*\}\}")


class CatalogueError(Exception):
    """Graph would not list the templates (a bad token, an unknown account, Graph unreachable)."""


@dataclass(frozen=True, slots=True)
class Template:
    """One translation of a template, with what sending it needs."""

    name: str
    language: str
    status: str
    category: str | None
    header_format: str
    header_text: str | None
    body_text: str
    body_parameters: int
    buttons: list[dict[str, str]] = field(default_factory=list)
    footer_text: str | None = None

    @property
    def approved(self) -> bool:
        return self.status.upper() == "APPROVED"

    @property
    def header_parameters(self) -> int:
        """A text header may have one variable ({{1}}); media headers always take their media."""
        return len(set(_PLACEHOLDER.findall(self.header_text or ""))) if self.header_format == "text" else 0

    @property
    def quick_reply_index(self) -> int | None:
        """The index of the first quick-reply button: its tap acknowledges the announcement."""
        return next((i for i, b in enumerate(self.buttons) if b.get("type") == "QUICK_REPLY"), None)


def parse(raw: dict[str, Any]) -> Template | None:
    """A template as Graph lists it, or None when it lacks a name, a language or a body."""
    name, language = raw.get("name"), raw.get("language")
    if not isinstance(name, str) or not isinstance(language, str):
        return None
    header_format, header_text, body, footer = "none", None, None, None
    buttons: list[dict[str, str]] = []
    for component in raw.get("components") or []:
        if not isinstance(component, dict):
            continue
        kind = str(component.get("type", "")).upper()
        if kind == "HEADER":
            fmt = str(component.get("format", "TEXT")).lower()
            header_format = fmt if fmt in HEADER_FORMATS else "none"
            header_text = component.get("text") if fmt == "text" else None
        elif kind == "BODY":
            body = component.get("text")
        elif kind == "FOOTER":
            footer = component.get("text")
        elif kind == "BUTTONS":
            buttons = [
                {"type": str(b.get("type", "")).upper(), "text": str(b.get("text", ""))}
                for b in component.get("buttons") or []
                if isinstance(b, dict)
            ]
    if not isinstance(body, str):
        return None
    return Template(
        name=name,
        language=language,
        status=str(raw.get("status") or "UNKNOWN").upper(),
        category=raw.get("category") if isinstance(raw.get("category"), str) else None,
        header_format=header_format,
        header_text=header_text if isinstance(header_text, str) else None,
        body_text=body,
        body_parameters=len(set(_PLACEHOLDER.findall(body))),
        buttons=buttons,
        footer_text=footer if isinstance(footer, str) else None,
    )


async def fetch(http: httpx.AsyncClient, *, api_url: str, waba_id: str, token: str) -> list[dict[str, Any]]:
    """Every template of the account, following Graph's paging (`paging.cursors.after` while `paging.next`)."""
    url = f"{api_url.rstrip('/')}/{waba_id}/message_templates"
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
    params: dict[str, str] = {"limit": str(PAGE_SIZE)}
    found: list[dict[str, Any]] = []
    for _ in range(MAX_PAGES):
        try:
            answer = await http.get(url, params=params, headers=headers)
        except httpx.HTTPError as exc:
            raise CatalogueError(f"Graph could not be reached ({type(exc).__name__})") from None
        try:
            body = msgspec.json.decode(answer.content)
        except msgspec.DecodeError:
            body = None
        if answer.status_code != 200 or not isinstance(body, dict):
            error = body.get("error") if isinstance(body, dict) else None
            why = error.get("message") if isinstance(error, dict) else None
            raise CatalogueError(f"Graph answered {answer.status_code}: {why or 'no error message'}")
        found += [t for t in body.get("data") or [] if isinstance(t, dict)]
        paging = body.get("paging")
        paging = paging if isinstance(paging, dict) else {}
        cursors = paging.get("cursors")
        after = cursors.get("after") if isinstance(cursors, dict) else None
        if not paging.get("next") or not after:
            return found
        params = {"limit": str(PAGE_SIZE), "after": str(after)}
    raise CatalogueError(f"more than {MAX_PAGES} pages of templates")


async def store(session: AsyncSession, waba_id: str, templates: list[Template]) -> None:
    """Replace the account's catalogue with ``templates`` (the caller commits)."""
    keep = [(t.name, t.language) for t in templates]
    await session.execute(
        query("templates_forget"),
        {"w": waba_id, "names": [n for n, _ in keep], "languages": [lang for _, lang in keep]},
    )
    for t in templates:
        await session.execute(
            query("template_upsert"),
            {
                "w": waba_id,
                "name": t.name,
                "language": t.language,
                "status": t.status,
                "category": t.category,
                "header_format": t.header_format,
                "header_text": t.header_text,
                "body_text": t.body_text,
                "body_parameters": t.body_parameters,
                "buttons": msgspec.json.encode(t.buttons).decode(),
                "components": msgspec.json.encode(_components(t)).decode(),
            },
        )
    await session.execute(query("template_sync_done"), {"w": waba_id, "n": len(templates)})


def _components(t: Template) -> list[dict[str, Any]]:
    """What we keep of Graph's components beyond the columns (the footer, for the preview)."""
    return [{"type": "FOOTER", "text": t.footer_text}] if t.footer_text else []


async def sync(session: AsyncSession, http: httpx.AsyncClient, *, api_url: str, waba_id: str, token: str) -> int:
    """Read the account's catalogue from Graph and store it; returns how many translations it has."""
    try:
        raw = await fetch(http, api_url=api_url, waba_id=waba_id, token=token)
    except CatalogueError as exc:
        # Kept (when the caller commits): the next hourly attempt waits its hour, and the reason is on record.
        await session.execute(query("template_sync_failed"), {"w": waba_id, "error": str(exc)[:500]})
        raise
    templates = [t for t in (parse(r) for r in raw) if t is not None]
    await store(session, waba_id, templates)
    log.info("template catalogue of account %s synced: %d translation(s)", waba_id, len(templates))
    return len(templates)


def _row(r: Any) -> Template:
    footer = next((c.get("text") for c in r.components or [] if c.get("type") == "FOOTER"), None)
    return Template(r.name, r.language, r.status, r.category, r.header_format, r.header_text, r.body_text,
                    r.body_parameters, list(r.buttons or []), footer)  # fmt: skip


async def translations(session: AsyncSession, waba_id: str, name: str) -> list[Template]:
    rows = (await session.execute(query("template_translations"), {"w": waba_id, "name": name})).all()
    return [_row(r) for r in rows]


async def listing(session: AsyncSession, waba_id: str, *, approved_only: bool) -> list[Template]:
    rows = (await session.execute(query("templates_list"), {"w": waba_id, "approved": approved_only})).all()
    return [_row(r) for r in rows]


async def synced(session: AsyncSession, waba_id: str) -> bool:
    """Has this account's catalogue ever been read?"""
    return bool((await session.execute(query("template_sync_known"), {"w": waba_id})).scalar())


def normalise_language(value: str) -> str:
    """`en-us`, `EN_us` → `en_US`: Meta's form (language, underscore, region in capitals)."""
    lang, _, region = value.strip().replace("-", "_").partition("_")
    return f"{lang.lower()}_{region.upper()}" if region else lang.lower()


def choose(options: list[Template], *languages: str | None) -> Template | None:
    """The approved translation for the first of ``languages`` the template has (exactly, else by base language:
    `en` takes `en_US`), else any approved one: a missing translation never fails a send."""
    approved = sorted((t for t in options if t.approved), key=lambda t: t.language)
    for wanted in (normalise_language(w) for w in languages if w):
        exact = next((t for t in approved if t.language == wanted), None)
        if exact is not None:
            return exact
        base = wanted.split("_")[0]
        near = next((t for t in approved if t.language.split("_")[0] == base), None)
        if near is not None:
            return near
    return approved[0] if approved else None


class TemplateCache:
    """Translations by (account, name), kept for a few seconds: the dispatcher renders every template send from
    it without a query per message. A changed catalogue is seen within ``ttl`` seconds."""

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], ttl: float = 10.0) -> None:
        self._sm = sessionmaker
        self._ttl = ttl
        self._entries: dict[tuple[str, str], tuple[float, list[Template]]] = {}

    async def get(self, waba_id: str, name: str) -> list[Template]:
        key = (waba_id, name)
        hit = self._entries.get(key)
        if hit is not None and hit[0] > time.monotonic():
            return hit[1]
        async with self._sm() as s:
            found = await translations(s, waba_id, name)
        self._entries[key] = (time.monotonic() + self._ttl, found)
        return found

    def forget(self, waba_id: str, name: str) -> None:
        self._entries.pop((waba_id, name), None)
