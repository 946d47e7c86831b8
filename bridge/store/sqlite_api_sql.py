"""SQL for the admin API's reads: filtered, keyset-paged events and deliveries, and a few counts.

Keyset paging (`WHERE (time, id) < (?, ?)`) instead of OFFSET: a page stays stable while new rows
arrive, and a deep page costs no more than the first.
"""

from __future__ import annotations

# Newest first; ?7/?8 are the last row of the previous page (NULL on the first page).
Q_EVENTS_PAGE = """
SELECT id, rule_id, type, status, severity, provider, source, resource_id, sequence,
       changes, state, occurred_at
FROM events
WHERE (?1 IS NULL OR rule_id = ?1) AND (?2 IS NULL OR source = ?2) AND (?3 IS NULL OR provider = ?3)
  AND (?4 IS NULL OR resource_id = ?4) AND (?5 IS NULL OR occurred_at >= ?5)
  AND (?6 IS NULL OR occurred_at < ?6)
  AND (?7 IS NULL OR occurred_at < ?7 OR (occurred_at = ?7 AND id < ?8))
ORDER BY occurred_at DESC, id DESC LIMIT ?9"""
Q_DELIVERIES_PAGE = """
SELECT id, event_id, channel, body, status, attempts, next_attempt_at, created_at, last_error
FROM deliveries
WHERE (?1 IS NULL OR status = ?1) AND (?2 IS NULL OR channel = ?2) AND (?3 IS NULL OR event_id = ?3)
  AND (?4 IS NULL OR created_at < ?4 OR (created_at = ?4 AND id < ?5))
ORDER BY created_at DESC, id DESC LIMIT ?6"""
Q_LAST_FIRED = "SELECT rule_id, MAX(occurred_at) FROM events GROUP BY rule_id"
# The newest firing of each rule id in ?1 (a JSON array): one seek per rule on events_firing_by_rule,
# so it costs the number of rules asked about, not the number of events; NULL for a rule never fired.
Q_LAST_FIRINGS = """
SELECT r.value, (SELECT MAX(occurred_at) FROM events WHERE rule_id = r.value AND status = 'firing')
FROM json_each(?1) AS r"""
# Resources currently present (not disappeared), per source; '' is the poller's listing marker row
# and bridge.* sources are the bridge's own health resources, not the provider's.
Q_RESOURCE_COUNTS = """
SELECT source, COUNT(*) FROM snapshots
WHERE provider = ? AND state IS NOT NULL AND resource_id <> '' AND source NOT LIKE 'bridge.%'
GROUP BY source"""
