"""GET /announcements/{id}/timeline: sends, deliveries, reads and acknowledgements per minute or hour.

Deliveries are inserted with SQL, standing in for the dispatcher and the status webhooks (as in
test_announcements.py, whose helpers this reuses)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tests.conftest import MakeTenant, Tenant
from tests.integration.test_announcements import Client, Db, create, deliver, employees

# 09:59:30 in Johannesburg (UTC+2): minutes and hours change within the test's few seconds of events.
T0 = datetime(2026, 12, 1, 7, 59, 30, tzinfo=UTC)


async def test_counts_each_step_in_its_bucket_in_the_employers_timezone(client: Client, tenant: Tenant, db: Db) -> None:
    ann = await create(client, tenant)
    ids = await employees(db, tenant.employer_id, 4)
    second = timedelta(seconds=1)
    await deliver(
        db,
        tenant.employer_id,
        ann["id"],
        [
            # Sent, delivered and read in the first minute; acknowledged in the next one (the next hour, too).
            (
                ids[0],
                "read",
                {
                    "sent_at": T0,
                    "delivered_at": T0 + second,
                    "read_at": T0 + 2 * second,
                    "acknowledged_at": T0 + 40 * second,
                },
            ),
            (ids[1], "delivered", {"sent_at": T0, "delivered_at": T0 + 45 * second}),
            (ids[2], "failed", {"error_code": 131026}),  # never sent: in no bucket
            (ids[3], "pending", {}),
        ],
    )
    url = f"/announcements/{ann['id']}/timeline"
    minute = (await client.get(url, headers=tenant.headers)).json()
    assert minute == {
        "bucket": "minute",
        "points": [
            {"at": "2026-12-01T07:59:00Z", "sent": 2, "delivered": 1, "read": 1, "acknowledged": 0},
            {"at": "2026-12-01T08:00:00Z", "sent": 0, "delivered": 1, "read": 0, "acknowledged": 1},
        ],
    }
    hour = (await client.get(url, params={"bucket": "hour"}, headers=tenant.headers)).json()
    assert hour["bucket"] == "hour"
    assert [(p["at"], p["sent"], p["acknowledged"]) for p in hour["points"]] == [
        ("2026-12-01T07:00:00Z", 2, 0),
        ("2026-12-01T08:00:00Z", 0, 1),
    ]


async def test_hours_start_on_the_employers_clock(client: Client, make_tenant: MakeTenant, db: Db) -> None:
    """India is UTC+05:30: its 13:00-14:00 hour starts at 07:30 UTC, not 07:00."""
    india = await make_tenant("india-co", timezone="Asia/Kolkata")
    ann = await create(client, india)
    (emp,) = await employees(db, india.employer_id, 1)
    await deliver(db, india.employer_id, ann["id"], [(emp, "sent", {"sent_at": T0})])
    hour = (await client.get(f"/announcements/{ann['id']}/timeline?bucket=hour", headers=india.headers)).json()
    assert hour["points"] == [{"at": "2026-12-01T07:30:00Z", "sent": 1, "delivered": 0, "read": 0, "acknowledged": 0}]


async def test_no_deliveries_yet_is_an_empty_timeline(client: Client, tenant: Tenant) -> None:
    ann = await create(client, tenant)
    answer = await client.get(f"/announcements/{ann['id']}/timeline", headers=tenant.headers)
    assert answer.status_code == 200
    assert answer.json() == {"bucket": "minute", "points": []}


async def test_bad_bucket_is_rejected_and_other_employers_get_404(
    client: Client, make_tenant: MakeTenant, db: Db
) -> None:
    a = await make_tenant("a-co")
    b = await make_tenant("b-co")
    ann = await create(client, a)
    (emp,) = await employees(db, a.employer_id, 1)
    await deliver(db, a.employer_id, ann["id"], [(emp, "sent", {"sent_at": T0})])
    url = f"/announcements/{ann['id']}/timeline"
    assert (await client.get(url, params={"bucket": "second"}, headers=a.headers)).status_code in (400, 422)
    assert (await client.get(url, headers=b.headers)).status_code == 404
    assert (await client.get("/announcements/999999999/timeline", headers=a.headers)).status_code == 404
    assert (await client.get(url, headers=a.headers)).json()["points"][0]["sent"] == 1
