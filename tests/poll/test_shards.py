"""Shards of a by-id group (bridge/shards.py): a stable spread of resource ids, and quotas that give
every live replica an even part and every shard a holder."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from bridge.shards import fair_quota, shard_of


def test_a_resource_is_in_the_same_shard_in_every_process_and_release():
    # Fixed values: a change of the hash would move every shard's watches between replicas that
    # run different releases during an upgrade.
    assert [shard_of(rid, 8) for rid in ("abc", "zz", "00000000-0000-4000-8000-000000000001")] == [0, 3, 1]


@given(
    st.integers(min_value=1, max_value=64),
    st.lists(st.text(min_size=1, max_size=8), min_size=1, max_size=10, unique=True),
)
def test_the_quotas_of_the_members_add_up_to_the_shards_and_differ_by_one_at_most(shards, members):
    quotas = [fair_quota(shards, members, m) for m in members]
    assert sum(quotas) == shards
    assert max(quotas) - min(quotas) <= 1


def test_a_replica_that_does_not_see_itself_counts_itself_last():
    assert fair_quota(3, ["a", "b"], "c") == 1
    assert fair_quota(2, ["a", "b"], "c") == 0  # the first members in id order take the remainder
