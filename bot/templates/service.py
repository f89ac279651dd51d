"""Templates for an employer: its account's catalogue, synced from Graph when asked, when first needed, hourly."""

from __future__ import annotations

import logging

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot import contracts
from bot.crypto import SecretKeyError, TokenBox
from bot.db.queries import query
from bot.errors import ConflictError
from bot.graph.account import Account, account
from bot.settings import Settings
from bot.templates import catalogue
from bot.templates.render import preview

log = logging.getLogger("jem.templates")


def to_contract(t: catalogue.Template) -> contracts.Template:
    sample = [f"{{{{{i + 1}}}}}" for i in range(t.body_parameters)]
    return contracts.Template(
        name=t.name,
        language=t.language,
        status=t.status,
        category=t.category,
        header=t.header_format,  # type: ignore[arg-type]
        body_parameters=t.body_parameters,
        buttons=[contracts.TemplateButton(type=b.get("type", ""), text=b.get("text", "")) for b in t.buttons],
        preview=preview(t, sample, {"text": "{{1}}"} if t.header_parameters else None),
    )


async def sync(session: AsyncSession, http: httpx.AsyncClient, settings: Settings, employer_id: int) -> int:
    """Read the employer's account's catalogue from Graph now (the caller commits)."""
    acct = await account(session, settings, employer_id)
    return await _sync(session, http, settings, acct)


async def _sync(session: AsyncSession, http: httpx.AsyncClient, settings: Settings, acct: Account) -> int:
    try:
        return await catalogue.sync(
            session, http, api_url=settings.whatsapp_api_url, waba_id=acct.waba_id, token=acct.token
        )
    except catalogue.CatalogueError as exc:
        raise ConflictError(f"The template catalogue could not be read: {exc}.") from None


async def ready_account(
    session: AsyncSession, http: httpx.AsyncClient, settings: Settings, employer_id: int
) -> Account:
    """The employer's account, its catalogue read once if it never was ("synced when first needed")."""
    acct = await account(session, settings, employer_id)
    if not await catalogue.synced(session, acct.waba_id):
        await _sync(session, http, settings, acct)
    return acct


async def listing(
    session: AsyncSession, http: httpx.AsyncClient, settings: Settings, employer_id: int, *, all_statuses: bool
) -> list[contracts.Template]:
    acct = await ready_account(session, http, settings, employer_id)
    return [to_contract(t) for t in await catalogue.listing(session, acct.waba_id, approved_only=not all_statuses)]


class Lookup:
    """Templates by name for an employer's account, its catalogue read from Graph first if it never was."""

    def __init__(self, http: httpx.AsyncClient, settings: Settings) -> None:
        self._http = http
        self._settings = settings

    async def translations(self, session: AsyncSession, employer_id: int, name: str) -> list[catalogue.Template]:
        acct = await ready_account(session, self._http, self._settings, employer_id)
        return await catalogue.translations(session, acct.waba_id, name)


async def sync_due(sessionmaker: async_sessionmaker[AsyncSession], http: httpx.AsyncClient, settings: Settings) -> int:
    """Read again every catalogue in use (the installation's account, each own number's) last read over an hour
    ago; returns how many were read. One account's failure is logged and kept; the others go on."""
    async with sessionmaker() as s:
        tokens: dict[str, str] = {}
        if settings.whatsapp_waba_id and settings.whatsapp_access_token:
            tokens[settings.whatsapp_waba_id] = settings.whatsapp_access_token
        for row in (await s.execute(query("sender_wabas"))).all():
            if row.waba_id not in tokens and settings.secret_key:
                try:
                    tokens[row.waba_id] = TokenBox(settings.secret_key).open(bytes(row.access_token))
                except SecretKeyError:
                    continue
        params = {"wabas": list(tokens), "secs": catalogue.SYNC_EVERY_SECONDS}
        due = list((await s.execute(query("template_sync_due"), params)).scalars())
    done = 0
    for waba_id in due:
        async with sessionmaker() as s, s.begin():
            try:
                await catalogue.sync(s, http, api_url=settings.whatsapp_api_url, waba_id=waba_id, token=tokens[waba_id])
                done += 1
            except catalogue.CatalogueError as exc:
                log.warning("template catalogue not read: %s; trying again in an hour", exc)
    return done
