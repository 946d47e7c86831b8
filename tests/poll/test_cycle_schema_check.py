"""The provider's schema check runs in the poller, and only for a body whose meaningful fields moved:
a violating body is a failed read (its last snapshot kept, nothing fired), never a change; a body
equal to the stored one but for its volatile fields is not checked again."""

from __future__ import annotations

import orjson
import pytest

from bridge.store.sqlite import SqliteStore
from tests.conftest import podero_poller, wallbox_key


@pytest.fixture
async def one_wallbox(tmp_path, make_config, podero, clock):
    user = podero.add_user(email="schema@example.com")
    wb = podero.add_wallbox(user)
    config = make_config(wallboxes=[{"user_id": user, "wallbox_id": wb}])
    store = SqliteStore(tmp_path / "schema.db")
    await store.open()
    async with podero_poller(config, store, clock) as (poller, provider):
        yield poller, provider, store, wb
    await store.close()


async def test_a_first_read_that_violates_the_schema_fails_and_stores_nothing(one_wallbox, podero):
    poller, provider, store, wb = one_wallbox
    body = podero.wallbox(wb)
    del body["owner"]
    podero.fail("wallbox", status=200, body=orjson.dumps(body))

    summary = await poller.poll(provider, "wallboxes")

    assert (summary.ok, summary.observed, summary.failed) == (False, 0, 1)
    assert await store.get_snapshot(wallbox_key(wb)) is None
    assert "at owner: Field required" in poller.health.get("podero").as_state()["last_error"]


async def test_a_changed_body_that_violates_the_schema_keeps_the_last_snapshot(one_wallbox, podero):
    poller, provider, store, wb = one_wallbox
    await poller.poll(provider, "wallboxes")  # the baseline
    before = await store.get_snapshot(wallbox_key(wb))
    body = podero.wallbox(wb)
    body["is_charging"] = "perhaps"  # a meaningful field moved, to a value the schema refuses
    podero.fail("wallbox", status=200, body=orjson.dumps(body))

    summary = await poller.poll(provider, "wallboxes")

    assert (summary.ok, summary.observed, summary.failed, summary.events) == (False, 0, 1, 0)
    assert await store.get_snapshot(wallbox_key(wb)) == before
    again = await poller.poll(provider, "wallboxes")  # the fault is gone: nothing changed meanwhile
    assert (again.ok, again.observed, again.changed, again.events) == (True, 1, 0, 0)


async def test_a_body_equal_but_for_volatile_fields_is_not_checked_again(one_wallbox, podero):
    poller, provider, store, wb = one_wallbox
    await poller.poll(provider, "wallboxes")  # the baseline passed the check
    before = await store.get_snapshot(wallbox_key(wb))
    body = podero.wallbox(wb)
    # Only a volatile field differs (and in a shape the schema would refuse): no meaningful change,
    # so the read is neither checked nor written.
    body["updated_at"] = "not a date"
    podero.fail("wallbox", status=200, body=orjson.dumps(body))

    summary = await poller.poll(provider, "wallboxes")

    assert (summary.ok, summary.observed, summary.failed, summary.changed) == (True, 1, 0, 0)
    assert await store.get_snapshot(wallbox_key(wb)) == before
