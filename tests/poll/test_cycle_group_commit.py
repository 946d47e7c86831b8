"""Group commit: the results of one page commit together, yet one that cannot be committed never keeps
the others out; and a large by-id group is polled page by page with the same outcome as one piece."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from bridge.errors import StoreError
from bridge.model import PollResult
from bridge.poll import cycle as poller_module
from bridge.store.sqlite import SqliteStore
from tests.conftest import podero_poller, wallbox_key


class RefusingStore(SqliteStore):
    """A real SQLite store that refuses any commit containing one of `refuse` (a poisoned result)."""

    refuse: frozenset[str] = frozenset()
    commits: int = 0

    async def commit(self, results: Sequence[PollResult]) -> None:
        self.commits += 1
        if any(r.snapshot.key.resource_id in self.refuse for r in results):
            raise StoreError("refused on purpose")
        await super().commit(results)


@pytest.fixture
async def setup(tmp_path, make_config, podero, clock):
    user = podero.add_user(email="group-commit@example.com")
    boxes = [podero.add_wallbox(user, wallbox_id=f"00000000-0000-4000-8000-0000000000f{i}") for i in range(5)]
    config = make_config(wallboxes=[{"user_id": user, "wallbox_id": b} for b in boxes])
    store = RefusingStore(tmp_path / "group.db")
    await store.open()
    async with podero_poller(config, store, clock) as (poller, provider):
        yield poller, provider, store, boxes
    await store.close()


async def test_a_result_that_cannot_be_committed_does_not_keep_the_others_out(setup):
    poller, provider, store, boxes = setup
    store.refuse = frozenset({boxes[2]})
    summary = await poller.poll(provider, "wallboxes")
    assert summary.observed == 5
    stored = {b: await store.get_snapshot(wallbox_key(b)) for b in boxes}
    assert stored[boxes[2]] is None
    assert all(stored[b] is not None for b in boxes if b != boxes[2])

    store.refuse = frozenset()  # the fault is gone: the next poll baselines the refused one (nothing lost)
    await poller.poll(provider, "wallboxes")
    assert await store.get_snapshot(wallbox_key(boxes[2])) is not None


async def test_when_the_store_refuses_everything_the_poll_fails_and_commits_nothing(setup):
    poller, provider, store, boxes = setup
    store.refuse = frozenset(boxes)
    with pytest.raises(StoreError):
        await poller.poll(provider, "wallboxes")
    assert [await store.get_snapshot(wallbox_key(b)) for b in boxes] == [None] * 5


async def test_a_group_larger_than_a_page_is_polled_page_by_page_each_page_one_commit(setup, monkeypatch):
    poller, provider, store, boxes = setup
    monkeypatch.setattr(poller_module, "SLICE", 2)  # 5 watches → pages of 2, 2 and 1
    summary = await poller.poll(provider, "wallboxes")
    assert summary.observed == 5
    assert store.commits == 3 + 1  # one group commit per page, then the provider's health
    assert None not in [await store.get_snapshot(wallbox_key(b)) for b in boxes]

    before = store.commits
    await poller.poll(provider, "wallboxes")  # only volatile fields moved: nothing is written
    assert store.commits == before
