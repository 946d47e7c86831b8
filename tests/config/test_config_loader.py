"""The config file: strict, `${ENV}`-expanded, and every problem reported at FILE:LINE with its key."""

from __future__ import annotations

import textwrap
from datetime import timedelta
from pathlib import Path

import pytest

from bridge.config.loader import load_config
from bridge.config.models import parse_duration
from bridge.errors import ConfigError

VALID = """
[store]
url = "sqlite:///x.db"

[server]
listen = "127.0.0.1:9090"
admin_token = "${ADMIN}"

[providers.podero]
kind = "podero"
base_url = "http://127.0.0.1:1"
client_id = "cid"
client_secret = "${PODERO_SECRET}"
org_id = "org"
poll_interval = "30s"

[[providers.podero.wallboxes]]
user_id = "u1"
wallbox_id = "w1"

[[providers.podero.wallboxes]]
user_id = "u2"
wallbox_id = "w2"

[outbound]
allow = ["127.0.0.0/8"]

[channels.partner]
kind = "webhook"
url = "http://127.0.0.1:2/hooks"
secret = "${HOOK_SECRET:-whsec_ZGVmYXVsdA==}"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(textwrap.dedent(text))
    return path


def problems(exc: pytest.ExceptionInfo[ConfigError]) -> list[str]:
    return [str(p) for p in exc.value.problems]


ENV = {"ADMIN": "admin-canary-1", "PODERO_SECRET": "podero-canary-2"}


def test_a_valid_file_loads_with_env_expanded_and_defaults_applied(tmp_path):
    config = load_config(write(tmp_path, VALID), environ=ENV)
    podero = config.providers["podero"]
    assert podero.poll_interval == timedelta(seconds=30)
    assert podero.client_secret is not None
    assert podero.client_secret.get_secret_value() == "podero-canary-2"
    assert "podero-canary-2" not in repr(podero)
    assert config.channels["partner"].secret.get_secret_value() == "whsec_ZGVmYXVsdA=="  # type: ignore[union-attr]
    assert (config.server.host, config.server.port) == ("127.0.0.1", 9090)
    assert config.base_dir == str(tmp_path.resolve())


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("500ms", 0.5), ("30s", 30), ("5m", 300), ("2h", 7200), ("1d", 86400), (90, 90)],
)
def test_durations_take_a_unit(text, seconds):
    assert parse_duration(text) == timedelta(seconds=seconds)


def test_a_missing_environment_variable_is_named_with_its_line(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, VALID), environ={"ADMIN": "x"})
    assert problems(info) == [
        f"{tmp_path / 'config.toml'}:13: providers.podero.client_secret: "
        "environment variable PODERO_SECRET is not set"
    ]


def test_every_problem_is_reported_at_once_with_file_line_and_key(tmp_path):
    text = VALID.replace('poll_interval = "30s"', 'poll_interval = "soon"\nbogus = 1').replace(
        'wallbox_id = "w2"', ""
    )
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text), environ=ENV)
    found = problems(info)
    path = tmp_path / "config.toml"
    assert any(
        p.startswith(f"{path}:15: providers.podero.poll_interval: ") and "invalid duration" in p
        for p in found
    )
    assert f"{path}:16: providers.podero.bogus: unknown key (check its spelling)" in found
    # the second [[providers.podero.wallboxes]] lacks wallbox_id: pointed at its header
    assert f"{path}:22: providers.podero.wallboxes[1].wallbox_id: required key is missing" in found
    assert len(found) == 3


def test_a_syntax_error_names_its_line(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, '[store]\nurl = "x"\nlisten = \n'), environ={})
    [problem] = info.value.problems
    assert problem.line == 3
    assert "TOML syntax error" in problem.message


def test_a_missing_kind_is_explained(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, '[channels.ops]\nto = ["a@b"]\n'), environ={})
    assert problems(info) == [
        f"{tmp_path / 'config.toml'}:1: channels.ops.kind: kind is required: "
        "one of webhook, email, mqtt, apprise, alertmanager"
    ]


def test_podero_needs_client_credentials_or_a_password(tmp_path):
    text = VALID.replace('client_id = "cid"\n', "")
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text), environ=ENV)
    assert "client_id + client_secret" in problems(info)[0]


def test_a_secret_value_never_appears_in_an_error(tmp_path):
    text = VALID.replace('client_id = "cid"', "client_id = 12345")
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text), environ=ENV)
    assert "podero-canary-2" not in str(info.value)
    assert "admin-canary-1" not in str(info.value)
    assert "12345" not in str(info.value)


def test_the_example_config_is_valid_with_an_empty_environment(repo_root):
    config = load_config(repo_root / "config.example.toml", environ={})
    assert set(config.providers) == {"podero", "realto", "wattshift"}
    assert set(config.channels) == {"partner", "ops", "homeassistant", "chat", "alertmanager"}


WATTSHIFT = """
[providers.ws]
kind = "wattshift"
api_key = "k"
home_ids = ["a"]
poll_interval = "{interval}"
{cap}
"""


@pytest.mark.parametrize(
    ("interval", "cap", "expected"),
    [
        pytest.param("2s", "", timedelta(minutes=5), id="default-floor-5m"),
        pytest.param("10m", "", timedelta(minutes=30), id="default-3-intervals"),
        pytest.param("2s", 'retry_after_cap = "90s"', timedelta(seconds=90), id="set"),
    ],
)
def test_a_providers_retry_after_cap_defaults_to_5m_or_3_intervals(tmp_path, interval, cap, expected):
    config = load_config(write(tmp_path, WATTSHIFT.format(interval=interval, cap=cap)), environ={})
    assert config.providers["ws"].backoff_cap == expected


def test_a_zero_retry_after_cap_is_refused_at_its_line(tmp_path):
    text = WATTSHIFT.format(interval="2s", cap='retry_after_cap = "0s"')
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text), environ={})
    assert (
        f"{tmp_path / 'config.toml'}:7: providers.ws.retry_after_cap: retry_after_cap must be longer than 0s"
        in (problems(info))
    )


def test_cluster_defaults_to_host_pid_and_a_30s_lease(tmp_path):
    import os
    import socket

    cluster = load_config(write(tmp_path, VALID), environ=ENV).cluster
    assert cluster.replica_id == f"{socket.gethostname()}-{os.getpid()}"
    assert cluster.lease_period == timedelta(seconds=30)
    assert cluster.shards == 8


def test_a_bad_cluster_section_is_named_at_its_line(tmp_path):
    text = VALID + '\n[cluster]\nreplica_id = ""\nlease_period = "1s"\nleader = true\nshards = 0\n'
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text), environ=ENV)
    found = problems(info)
    path = tmp_path / "config.toml"
    lines = text.splitlines()
    at = {key: lines.index(line) + 1 for key in ("replica_id", "lease_period", "leader", "shards")
          for line in lines if line.startswith(f"{key} =")}  # fmt: skip
    assert any(p.startswith(f"{path}:{at['replica_id']}: cluster.replica_id: ") for p in found)
    assert any(
        p.startswith(f"{path}:{at['lease_period']}: cluster.lease_period: ") and "between 3s" in p
        for p in found
    )
    assert f"{path}:{at['leader']}: cluster.leader: unknown key (check its spelling)" in found
    shards = f"{path}:{at['shards']}: cluster.shards: "
    assert any(p.startswith(shards) and "between 1 and 256" in p for p in found)


def test_the_group_commit_window_reaches_the_sqlite_store_and_a_long_one_is_refused_at_its_line(tmp_path):
    from bridge.app import open_store_for

    text = VALID.replace('url = "sqlite:///x.db"', 'url = "sqlite:///x.db"\ngroup_commit_window = "0ms"')
    store = open_store_for(load_config(write(tmp_path, text), environ=ENV))
    assert store._group._window == timedelta(0)  # every commit goes at once unless commits overlap
    default = open_store_for(load_config(write(tmp_path, VALID), environ=ENV))
    assert default._group._window == timedelta(milliseconds=3)

    text = VALID.replace('url = "sqlite:///x.db"', 'url = "sqlite:///x.db"\ngroup_commit_window = "1s"')
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text), environ=ENV)
    [problem] = [p for p in problems(info) if "group_commit_window" in p]
    assert problem.startswith(f"{tmp_path / 'config.toml'}:4: store.group_commit_window: ")
    assert "at most 100ms" in problem
