"""Templates end to end: `jem-bot serve` and `jem-bot simulator --enforce-window` (its demo catalogue).

- The catalogue is synced from the simulator's `GET /{waba_id}/message_templates`.
- An image-header template announcement reaches 300 employees in three languages: English and Afrikaans get
  their own translation; isiZulu, which `roster_notice` lacks, falls back to the employer's English. The bodies
  the simulator received are checked per language, and the announcement counts them.
- A multi-paragraph text goes out as a template parameter, flattened as Meta requires (the simulator refuses a
  newline with 132018, as Meta does).
- Each bad template announcement is refused naming its field.
- A text announcement reaches only the employee who wrote in the last 24 hours; the others fail with 131047,
  and the announcement says a template is needed.
- Nobody gets anything twice.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from tests.acceptance.stack import poll, serve_and_simulator, write_inbound
from tests.conftest import MakeTenant, Tenant

pytestmark = pytest.mark.slow

WABA = "200000000000001"
PER_LANGUAGE = 100
ROSTER = "https://example.com/roster.png"


@pytest.fixture
async def running(tmp_path: Path, database_url: str) -> AsyncIterator[tuple[str, str]]:
    flags = ["--ack-rate", "0", "--reply-rate", "0", "--stop-rate", "0", "--username-rate", "0",
             "--status-delay", "0.01", "--enforce-window"]  # fmt: skip
    env = {"JEM_SEND_RATE": "400", "WHATSAPP_WABA_ID": WABA}
    async with serve_and_simulator(
        tmp_path, database_url, access_token="templates-token", simulator_flags=flags, env=env
    ) as urls:
        yield urls


def workforce() -> list[dict[str, Any]]:
    people = []
    for n, language in enumerate(("en", "af", "zu")):
        people += [
            {"phone": f"+27870{n}{i:05d}", "name": f"Employee {language} {i}", "language": language}
            for i in range(PER_LANGUAGE)
        ]
    return people


async def test_templates_in_three_languages_flattened_parameters_validation_and_the_window(
    running: tuple[str, str], make_tenant: MakeTenant, db: Any
) -> None:
    api, sim = running
    tenant = await make_tenant("acme", "Acme Ltd")
    async with db() as s, s.begin():
        await s.execute(text("UPDATE employer SET language = 'en' WHERE id = :e"), {"e": tenant.employer_id})
    async with httpx.AsyncClient(timeout=10) as http:

        async def call(method: str, path: str, tenant: Tenant = tenant, ok: bool = True, **kw: Any) -> Any:
            answer = await http.request(method, f"{api}{path}", headers=tenant.headers, **kw)
            if ok:
                assert answer.status_code < 300, answer.text
            return answer

        async def sends() -> list[dict[str, Any]]:
            recipients = (await http.get(f"{sim}/_simulator/sends")).json()["recipients"]
            return [{"recipient": r["recipient"], **m} for r in recipients for m in r["messages"]]

        async def completed(aid: int) -> bool:
            return bool((await call("GET", f"/announcements/{aid}")).json()["status"] == "completed")

        await call("POST", "/employees/import", json={"employees": workforce()})

        # --- the catalogue --------------------------------------------------------------------------------
        synced = (await call("POST", "/templates/sync")).json()["synced"]
        assert synced >= 10
        listed = {(t["name"], t["language"]): t for t in (await call("GET", "/templates")).json()["items"]}
        assert ("roster_notice", "af") in listed
        assert ("roster_notice", "zu") not in listed  # the gap the fallback covers
        assert ("draft_notice", "en") not in listed  # pending: not offered
        assert listed[("roster_notice", "en")]["header"] == "image"

        # --- 300 employees, three languages, an image header ---------------------------------------------
        roster = {"name": "roster_notice", "parameters": ["team", "next week"], "header": {"link": ROSTER}}
        aid = (await call("POST", "/announcements", json={"template": roster})).json()["id"]
        await poll("the roster announcement to complete", lambda: completed(aid), 60)
        detail = (await call("GET", f"/announcements/{aid}")).json()
        assert detail["counts"]["failed"] == 0
        assert detail["languages"] == {"af": PER_LANGUAGE, "en": 2 * PER_LANGUAGE}
        got = [m for m in await sends() if m["template"] and m["template"].startswith("roster_notice")]
        assert len(got) == 3 * PER_LANGUAGE
        by_group: dict[str, Counter[str]] = {"0": Counter(), "1": Counter(), "2": Counter()}
        for m in got:
            by_group[m["recipient"][5]][m["language"]] += 1  # 27870<group>…: en, af, zu
            assert "team" in m["text"]
            assert "next week" in m["text"]
        assert by_group == {"0": Counter(en=100), "1": Counter(af=100), "2": Counter(en=100)}
        assert all("Hallo" in m["text"] for m in got if m["language"] == "af")
        assert all(m["text"].startswith("[image") and "Hi team" in m["text"] for m in got if m["language"] == "en")

        # --- a multi-paragraph text as a template parameter -------------------------------------------------
        news = "Canteen update.\n\nFrom Monday the canteen opens at 07:00.\n\tBring your card."
        created = await call(
            "POST",
            "/announcements",
            json={
                "template": {"name": "staff_announcement", "parameters": [news]},
                "audience": {"employee_ids": [1, 2, 3]},
            },
        )
        shown = created.json()
        flat = "Canteen update. From Monday the canteen opens at 07:00. Bring your card."
        assert shown["template"]["parameters"] == [flat]
        assert flat in shown["preview"]
        await poll("the multi-paragraph announcement to complete", lambda: completed(shown["id"]), 30)
        counts = (await call("GET", f"/announcements/{shown['id']}")).json()["counts"]
        assert counts["failed"] == 0
        assert counts["total"] == 3
        assert sum(1 for m in await sends() if m["text"] and flat in m["text"]) == 3

        # --- bad template announcements, each naming its field ----------------------------------------------
        bad = [
            ({"name": "no_such_template", "parameters": ["x"]}, "template.name"),
            ({"name": "draft_notice", "parameters": ["x"]}, "template.name"),
            ({"name": "staff_announcement", "parameters": ["a", "b"]}, "template.parameters"),
            ({"name": "roster_notice", "parameters": ["team", "next week"]}, "template.header"),
            ({"name": "shift_reminder", "parameters": ["x"], "header": {"text": "Hi"}}, "template.header"),
            ({"name": "staff_announcement", "parameters": ["x" * 1100]}, "template.parameters[0]"),
        ]
        for template, field in bad:
            answer = await call("POST", "/announcements", ok=False, json={"template": template})
            assert answer.status_code == 422, (template, answer.text)
            assert field in [e["field"] for e in answer.json()["errors"]], (template, answer.text)

        # --- text outside the 24-hour window ---------------------------------------------------------------
        wrote = "+27870000000"  # writes first: inside the window
        await write_inbound(http, sim, wrote, "Hello HR")
        employees = (await call("GET", "/employees", params={"q": "Employee en", "limit": 5})).json()["items"]
        ids = sorted({e["id"] for e in employees} | {1})
        text_aid = (
            await call(
                "POST", "/announcements", json={"message": "Payslips are out", "audience": {"employee_ids": ids}}
            )
        ).json()["id"]
        await poll("the text announcement to complete", lambda: completed(text_aid), 30)
        detail = (await call("GET", f"/announcements/{text_aid}")).json()
        assert detail["counts"]["failed"] == len(ids) - 1
        assert detail["failures"][0]["code"] == 131047
        assert "template" in detail["failures"][0]["title"]
        assert detail["failures"][0]["count"] == len(ids) - 1
        reached = [m["recipient"] for m in await sends() if m["text"] == "Payslips are out"]
        assert reached == [wrote.lstrip("+")]

        # --- nothing twice -------------------------------------------------------------------------------------
        stats = (await http.get(f"{sim}/_simulator/stats")).json()
        assert stats["duplicates"] == 0
