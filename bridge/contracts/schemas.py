"""One JSON Schema (2020-12) per event type, generated from the envelope models.

Which event types exist is the rule set's business: a rule's `type` (default: its id) on its
`source`; one type may be shared by rules on several sources, whose `data` is then a union keyed by
`data.source`. The bridge's own `wattbridge.digest` and `wattbridge.test` are always listed, and
`wattbridge.flapping` (#14) when a rule has `flap`, on those rules' sources.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from bridge.contracts.envelope import DIGEST_TYPE, FLAPPING_TYPE, TEST_TYPE, envelope_model
from bridge.rules.engine import Rule

DIALECT = "https://json-schema.org/draft/2020-12/schema"


def event_types(rules: Iterable[Rule]) -> dict[str, tuple[str, ...]]:
    """event type → the sources that emit it, sorted; the built-in types included."""
    found: defaultdict[str, set[str]] = defaultdict(set)
    for rule in rules:
        found[rule.type].add(rule.source)
        if rule.flap is not None:
            found[FLAPPING_TYPE].add(rule.source)
    found[DIGEST_TYPE] = set()
    found[TEST_TYPE] = {"bridge.channel"}
    return {t: tuple(sorted(found[t])) for t in sorted(found)}


def models(types: Mapping[str, tuple[str, ...]]) -> dict[str, type[BaseModel]]:
    return {t: envelope_model(t, sources) for t, sources in types.items()}


@functools.lru_cache(maxsize=512)  # a few ms each to build; callers only read it
def schema_document(event_type: str, sources: tuple[str, ...]) -> dict[str, Any]:
    """A standalone schema for one event type (its own `$defs`), as `/api/schemas/{type}` serves it."""
    schema = envelope_model(event_type, sources).model_json_schema(mode="validation")
    return {"$schema": DIALECT, "$id": f"urn:wattbridge:event:{event_type}", **schema}


def components(
    types: Mapping[str, tuple[str, ...]], ref_template: str
) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """Every type's schema as a `$ref` into shared definitions (for the OpenAPI document)."""
    wanted = [(m, "validation") for m in models(types).values()]
    refs, defs = models_json_schema(wanted, ref_template=ref_template)  # type: ignore[arg-type]  # mode literal
    by_type = {t: refs[(m, "validation")] for t, m in models(types).items()}
    return by_type, dict(defs.get("$defs", {}))
