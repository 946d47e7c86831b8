"""Rule evaluation throughput: changes evaluated per second with 10, 100 and 1,000 rules.

Rules are indexed by (source, event, field), so the cost of a change should grow with the rules that
watch its field, not with all rules. Each rule set spreads its rules over 50 distinct fields of
`podero.wallbox`; every change touches one field. Two mixes: `to`/`above` conditions only, and a
third of the rules with an `if` expression (a Jinja2 sandbox call, the dominant cost when present).

    .venv/bin/python bench/rules.py [--changes N] [--repeat R]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

from bridge.model import Change
from bridge.rules.engine import Rule, RuleSet
from bridge.rules.templates import Expression

FIELDS = [f"field_{i}" for i in range(50)]


def make_rules(n: int, *, with_if: bool = True) -> RuleSet:
    rng = random.Random(n)
    rules = []
    for i in range(n):
        field = FIELDS[i % len(FIELDS)]
        kind = i % 3 if with_if else i % 2
        rules.append(
            Rule(
                id=f"rule-{i}",
                description="",
                source="podero.wallbox",
                field=field,
                event="changed",
                severity="info",
                type="bench",
                channels=("partner",),
                file="bench.toml",
                line=i,
                to=(rng.randint(0, 9),) if kind == 0 else None,
                above=float(rng.randint(0, 9)) if kind == 1 else None,
                condition=Expression(
                    "new.is_charging and old.is_charging != new.is_charging", rule_id=f"rule-{i}"
                )
                if kind == 2
                else None,
            )
        )
    return RuleSet(rules)


def workload(count: int) -> list[tuple[dict[str, object], dict[str, object], list[Change]]]:
    rng = random.Random(7)
    out = []
    base = dict.fromkeys(FIELDS, 0) | {"is_charging": False}
    for _ in range(count):
        field = rng.choice(FIELDS)
        old = dict(base)
        new = dict(base)
        new[field] = rng.randint(0, 9)
        new["is_charging"] = rng.random() < 0.5
        out.append((old, new, [Change(field=field, old=old[field], new=new[field])]))
    return out


def measure(rules: RuleSet, items: list[tuple[dict[str, object], dict[str, object], list[Change]]]) -> float:
    evaluate = rules.evaluate
    started = time.perf_counter()
    for old, new, changes in items:
        # As the poller calls it: the engine builds the template context only if an `if` needs it.
        evaluate(source="podero.wallbox", kind="changed", old=old, new=new, changes=changes)
    return len(items) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--changes", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    items = workload(args.changes)
    print(f"{'rules':>6} {'if':>4} {'changes/s (median)':>20} {'min':>10} {'max':>10}  fired/change")
    for n, with_if in ((10, False), (100, False), (1000, False), (10, True), (100, True), (1000, True)):
        rules = make_rules(n, with_if=with_if)
        fired = sum(
            len(rules.evaluate(source="podero.wallbox", kind="changed", old=o, new=nw, changes=c))
            for o, nw, c in items[:10_000]
        ) / min(len(items), 10_000)
        runs = [measure(rules, items) for _ in range(args.repeat)]
        print(
            f"{n:>6} {'1/3' if with_if else '-':>4} {statistics.median(runs):>20,.0f} "
            f"{min(runs):>10,.0f} {max(runs):>10,.0f}  {fired:.2f}"
        )


if __name__ == "__main__":
    main()
