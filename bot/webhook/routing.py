"""Whose message is it: an employee's message is routed by the number it was written to
(docs/architecture.md#several-numbers).

An employer's own number serves that employer alone. The shared number serves every employer without one, and a
person may work for several of them: a message that quotes one of our announcements belongs to that
announcement's employer; otherwise, when the person works for more than one of those employers, nothing is
guessed. The message is held out of every inbox, the person is asked once (an interactive list of the employers'
names), and their answer files it, and what they write in the next 24 hours, with the employer they chose.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from bot.db.queries import query
from bot.graph.messages import choice_list
from bot.webhook.payloads import Message

# How long a person's answer to "which employer is your message for?" files their messages on that number.
CHOICE_SECONDS = 24 * 3600
CHOICE_PREFIX = "employer:"
QUESTION = "Which employer is your message for?"


@dataclass(frozen=True, slots=True)
class Person:
    """One employee record of the person who wrote (someone may work for several employers)."""

    id: int
    employer_id: int
    active: bool
    employer_name: str
    # The employer's own number; None when it sends from the shared one.
    own_number: str | None


@dataclass(frozen=True, slots=True)
class Quoted:
    id: int
    announcement_id: int | None
    employer_id: int
    employee_id: int


@dataclass(frozen=True, slots=True)
class Filing:
    """Where a message goes: an employer's inbox (and which of its employees wrote), nowhere, or held."""

    employer_id: int | None = None
    employee_id: int | None = None
    held: bool = False


@dataclass(frozen=True, slots=True)
class Sender:
    """Who wrote, to which number, and which of their employee records that number serves."""

    phone: str | None
    user_id: str | None
    # `metadata.phone_number_id` ("" when Meta did not say): the scope of a remembered choice.
    number: str
    # The employer whose own number it is (None: the shared number).
    own_employer: int | None
    people: list[Person]
    # The people at employers this number serves; active ones when there are any.
    in_scope: list[Person]

    @property
    def served(self) -> list[Person]:
        """Every employee record of theirs at the employers this number serves, deactivated ones included."""
        return _served(self.people, self.own_employer)

    @property
    def employers(self) -> list[int]:
        """The employers this message could be for, most recently messaged first."""
        return list(dict.fromkeys(p.employer_id for p in self.in_scope))

    def at(self, employer_id: int) -> Person | None:
        return next((p for p in self.in_scope if p.employer_id == employer_id), None) or next(
            (p for p in self.people if p.employer_id == employer_id), None
        )

    @property
    def reply_number(self) -> str | None:
        """The number replies go out from: the own number written to; None for the shared one."""
        return self.number if self.own_employer is not None else None


def _served(people: list[Person], own_employer: int | None) -> list[Person]:
    """An employer's own number serves that employer alone; the shared number, every employer without one."""
    if own_employer is not None:
        return [p for p in people if p.employer_id == own_employer]
    return [p for p in people if p.own_number is None]


async def sender(
    session: AsyncSession, *, phone: str | None, user_id: str | None, phone_number_id: str | None
) -> Sender:
    own = None
    if phone_number_id:
        own = (await session.execute(query("sender_of_number"), {"p": phone_number_id})).scalar()
    rows = (await session.execute(query("inbound_people"), {"phone": phone, "uid": user_id})).all()
    people = [Person(r.id, r.employer_id, r.active, r.employer_name, r.own_number) for r in rows]
    scope = _served(people, own)
    active = [p for p in scope if p.active]
    return Sender(phone, user_id, phone_number_id or "", own, people, active or scope)


async def quoted(session: AsyncSession, msg: Message, who: Sender) -> Quoted | None:
    ctx = msg.context.id if msg.context else None
    ack = msg.acked_delivery_id
    if ctx is None and ack is None:
        return None
    params = {"ctx": ctx, "ack": ack, "who": [p.id for p in who.people]}
    row = (await session.execute(query("inbound_quoted"), params)).first()
    return None if row is None else Quoted(row.id, row.announcement_id, row.employer_id, row.employee_id)


def chosen_employer(msg: Message) -> int | None:
    """The employer id an answer to our question carries (`employer:<id>` in the list row's id)."""
    choice = msg.interactive.list_reply if msg.interactive is not None else None
    value = choice.id if choice is not None else None
    if value is None or not value.startswith(CHOICE_PREFIX):
        return None
    digits = value.removeprefix(CHOICE_PREFIX)
    return int(digits) if digits.isascii() and digits.isdigit() and len(digits) <= 18 else None


async def filing(session: AsyncSession, who: Sender, quote: Quoted | None, *, may_hold: bool) -> Filing:
    """Where the message goes. ``may_hold`` is False for messages acted on whoever they are for (STOP, START,
    HELP, the answer to our question): those are never held and never make us ask."""
    if quote is not None:
        person = who.at(quote.employer_id)
        employee = quote.employee_id if any(p.id == quote.employee_id for p in who.people) else None
        return Filing(quote.employer_id, employee or (person.id if person else None))
    employers = who.employers
    if len(employers) == 1:
        return Filing(employers[0], who.in_scope[0].id)
    if not employers:
        # Nobody we know on this number: on an employer's own number it is still that employer's message (a new
        # hire, someone writing from another phone); on the shared one it is nobody's.
        return Filing(who.own_employer)
    params = {"pnid": who.number, "phone": who.phone, "uid": who.user_id}
    remembered = (await session.execute(query("employer_choice_current"), params)).scalar()
    if remembered in employers:
        person = who.at(remembered)
        return Filing(remembered, person.id if person else None)
    return Filing(held=may_hold)


async def asked_before(session: AsyncSession, who: Sender, wamid: str) -> bool:
    """An earlier message of theirs on this number is still held: the question went out then."""
    params = {"wamid": wamid, "pnid": who.number, "phone": who.phone, "uid": who.user_id}
    return bool((await session.execute(query("inbound_held_before"), params)).scalar())


def question(who: Sender) -> dict[str, object]:
    """The interactive list asking which of the person's employers a message is for."""
    names = {p.employer_id: p.employer_name for p in reversed(who.in_scope)}
    rows = [(f"{CHOICE_PREFIX}{e}", names[e]) for e in sorted(who.employers, key=lambda e: names[e].casefold())]
    return choice_list(body=QUESTION, button="Choose employer", rows=rows)


async def choose(session: AsyncSession, who: Sender, employer_id: int) -> Person | None:
    """Remember the person's answer for 24 h and file their held messages; None if it is not one of theirs."""
    if employer_id not in who.employers:
        return None
    person = who.at(employer_id)
    assert person is not None
    params = {
        "phone": who.phone,
        "uid": who.user_id,
        "pnid": who.number,
        "e": employer_id,
        "ttl": CHOICE_SECONDS,
    }
    await session.execute(query("employer_choice_insert"), params)
    filed = {"e": employer_id, "employee_id": person.id, "pnid": who.number, "phone": who.phone, "uid": who.user_id}
    await session.execute(query("inbound_file_held"), filed)
    return person
