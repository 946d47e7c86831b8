"""`wattbridge silences add | list | expire` on the store a config names (a real SQLite file)."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from bridge.cli.main import main
from bridge.model import ResourceKey
from bridge.notify.silences import SilenceError, new_silence


@pytest.fixture
def config(tmp_path) -> str:
    path = tmp_path / "config.toml"
    path.write_text(
        textwrap.dedent(f"""
        [store]
        url = "sqlite:///{tmp_path / "b.db"}"
        [channels.ops]
        kind = "email"
        to = ["ops@example.com"]
        from = "wattbridge@example.com"
        """)
    )
    return str(path)


def test_add_list_and_expire_a_silence(config, capsys):
    code = main(
        ["silences", "add", "-c", config, "--resource", "wb-*", "--duration", "2h",
         "--comment", "firmware rollout", "--by", "ada"]
    )  # fmt: skip
    silence_id = capsys.readouterr().out.strip()
    assert code == 0
    assert silence_id.startswith("sil_")

    assert main(["silences", "list", "-c", config, "--json"]) == 0
    [listed] = [orjson.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert listed["id"] == silence_id
    assert listed["resource"] == "wb-*"
    assert listed["comment"] == "firmware rollout"

    assert main(["silences", "expire", "-c", config, silence_id]) == 0
    assert f"{silence_id} expired" in capsys.readouterr().out
    assert main(["silences", "list", "-c", config]) == 0
    assert capsys.readouterr().out.strip() == "no silences"
    assert main(["silences", "list", "-c", config, "--all"]) == 0
    assert "expired" in capsys.readouterr().out
    assert main(["silences", "expire", "-c", config, silence_id]) == 1
    assert "no active silence" in capsys.readouterr().err


def test_a_silence_without_a_comment_or_matcher_is_refused_with_the_reason(config, capsys):
    assert main(["silences", "add", "-c", config, "--duration", "1h", "--comment", "x"]) == 1
    assert "at least one of rule, source or resource" in capsys.readouterr().err
    assert main(["silences", "add", "-c", config, "--rule", "r", "--duration", "1h", "--comment", " "]) == 1
    assert "comment" in capsys.readouterr().err


T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"source": "podero.wallbx"}, "matches no source"),
        ({"rule": "r", "ends_at": T0 - timedelta(minutes=1), "duration": None}, "before it starts"),
        ({"rule": "r", "duration": timedelta(days=400)}, "at most 366 days"),
        ({"rule": "r", "ends_at": T0 + timedelta(hours=1)}, "exactly one of"),
        ({"rule": "r", "starts_at": datetime(999, 1, 1, tzinfo=UTC)}, "start after 2000"),
        ({"rule": "r", "duration": timedelta.max}, "after the year 9999"),
    ],
)
def test_new_silence_validates(kwargs, message):
    args = {"now": T0, "duration": timedelta(hours=1), "comment": "why"} | kwargs
    with pytest.raises(SilenceError, match=message):
        new_silence(**args)


def test_a_glob_silence_matches_only_its_resources_and_only_while_active():
    s = new_silence(now=T0, resource="wb-*", source="podero.*", duration=timedelta(hours=1), comment="c")
    wb = ResourceKey(source="podero.wallbox", provider="podero", resource_id="wb-7")
    other = ResourceKey(source="podero.wallbox", provider="podero", resource_id="hp-1")
    assert s.matches("any-rule", wb, T0)
    assert not s.matches("any-rule", other, T0)
    assert not s.matches("any-rule", wb, T0 + timedelta(hours=1))
