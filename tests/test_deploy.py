"""The Dockerfile and the systemd unit point at real things: the CLI command they run parses with the
real parser, the healthcheck passes against a live bridge, the shipped production config loads with
the rules beside it, and systemd itself accepts the unit. (No container engine runs here, so the image
is never built in tests: these checks are what can be proved without one.)"""

from __future__ import annotations

import asyncio
import json
import shlex
import shutil
import signal
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

from bridge.cli import main as cli
from bridge.config.loader import load_config
from bridge.errors import ConfigError
from bridge.notify.rulebook import load_for

CONFIG_IN_IMAGE = "/etc/wattbridge/config.toml"
ENV = {  # what an operator's env file holds; the values are placeholders
    "WATTBRIDGE_ADMIN_TOKEN": "deploy-test-admin-token-7d1e",
    "PODERO_CLIENT_ID": "client",
    "PODERO_CLIENT_SECRET": "client-secret",
    "PODERO_ORG_ID": "00000000-0000-4000-8000-000000000001",
    "PARTNER_WEBHOOK_URL": "https://partner.example.com/hooks/energy",
    "PARTNER_WEBHOOK_SECRET": "whsec_ZGVwbG95LXRlc3Qtc2VjcmV0",
    "OPS_EMAIL": "ops@example.com",
    "WATTBRIDGE_EMAIL_FROM": "wattbridge@example.com",
    "SMTP_HOST": "smtp.example.com",
}


@dataclass(frozen=True)
class Instruction:
    name: str
    args: str


def dockerfile(repo_root: Path) -> list[Instruction]:
    """The Dockerfile's instructions, continuation lines joined, comments dropped."""
    out: list[Instruction] = []
    pending = ""
    for raw in (repo_root / "Dockerfile").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        name, _, args = (pending + line).partition(" ")
        out.append(Instruction(name.upper(), args.strip()))
        pending = ""
    return out


def one(instructions: list[Instruction], name: str) -> str:
    [found] = [i.args for i in instructions if i.name == name]
    return found


def final_stage(instructions: list[Instruction]) -> list[Instruction]:
    last_from = max(n for n, i in enumerate(instructions) if i.name == "FROM")
    return instructions[last_from:]


def unit(repo_root: Path) -> dict[str, list[tuple[str, str]]]:
    """The systemd unit as sections of (key, value): keys may repeat, as systemd allows."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current = ""
    for raw in (repo_root / "deploy" / "wattbridge.service").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = line.strip("[]")
            sections[current] = []
            continue
        key, sep, value = line.partition("=")
        assert sep, f"not KEY=value: {line!r}"
        sections[current].append((key, value))
    return sections


def value(section: list[tuple[str, str]], key: str) -> str:
    [found] = [v for k, v in section if k == key]
    return found


def image_etc(repo_root: Path, root: Path) -> Path:
    """Lay out /etc/wattbridge under `root` exactly as the Dockerfile's COPY lines do."""
    for i in final_stage(dockerfile(repo_root)):
        if i.name != "COPY" or i.args.startswith("--from"):
            continue
        src, dest = i.args.split()
        target = root / dest.lstrip("/")
        if (repo_root / src).is_dir():
            shutil.copytree(repo_root / src, target)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(repo_root / src, target)
    return root / CONFIG_IN_IMAGE.lstrip("/")


def test_the_image_runs_the_real_cli_as_a_non_root_user_on_python_3_11_slim(repo_root):
    instructions = dockerfile(repo_root)
    stage = final_stage(instructions)
    assert one(stage, "FROM") == "python:3.11-slim"
    user = one(stage, "USER").split(":")[0]
    assert user not in ("root", "0")
    argv = json.loads(one(stage, "ENTRYPOINT")) + json.loads(one(stage, "CMD"))
    scripts = tomllib.loads((repo_root / "pyproject.toml").read_text())["project"]["scripts"]
    assert argv[0] in scripts
    args = cli._parser().parse_args(argv[1:])
    assert (args.command, args.config) == ("run", CONFIG_IN_IMAGE)
    for i in instructions:  # every file the build copies from the repository exists
        if i.name == "COPY" and not i.args.startswith("--from"):
            *sources, _dest = i.args.split()
            for src in sources:
                assert (repo_root / src).exists(), f"COPY {src}: no such path in the repository"


def test_the_shipped_config_loads_with_its_rules_where_the_image_puts_them(repo_root, tmp_path, capsys):
    stage = final_stage(dockerfile(repo_root))
    config_path = image_etc(repo_root, tmp_path)
    listen = one(stage, "ENV").split("WATTBRIDGE_LISTEN=")[1].split()[0]
    config = load_config(config_path, environ=ENV | {"WATTBRIDGE_LISTEN": listen})
    assert config.server.admin_token is not None  # the status page and the API are on
    assert str(config.server.port) == one(stage, "EXPOSE")
    assert config.server.host == "0.0.0.0"  # noqa: S104 -- inside a container, as it must be
    store_file = Path(config.store.url.removeprefix("sqlite:///"))
    assert str(store_file.parent) == json.loads(one(stage, "VOLUME"))[0] == one(stage, "WORKDIR")
    rules = load_for(config)  # every rule's channels and template files resolve
    assert len(rules.rules) > 0

    # Outside the image (the systemd unit) it listens on loopback unless told otherwise.
    assert load_config(config_path, environ=ENV).server.listen == "127.0.0.1:8080"
    # A missing secret is named, not silently empty.
    with pytest.raises(ConfigError, match="WATTBRIDGE_ADMIN_TOKEN"):
        load_config(config_path, environ={k: v for k, v in ENV.items() if k != "WATTBRIDGE_ADMIN_TOKEN"})


async def test_the_image_healthcheck_passes_against_a_live_bridge_and_fails_without_one(
    repo_root, make_config, make_bridge, unused_tcp_port
):
    stage = final_stage(dockerfile(repo_root))
    check = one(stage, "HEALTHCHECK")
    exec_form = json.loads(check[check.index("CMD") + 3 :])
    assert exec_form[:2] == ["python", "-c"]
    code = exec_form[2]
    assert f"127.0.0.1:{one(stage, 'EXPOSE')}/healthz" in code

    bridge = await make_bridge(make_config())
    url = bridge.client.make_url("/healthz")

    async def healthcheck(port: int) -> int:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", code.replace("127.0.0.1:8080", f"127.0.0.1:{port}"),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        return await asyncio.wait_for(proc.wait(), timeout=20)

    assert await healthcheck(int(url.port or 0)) == 0
    assert await healthcheck(unused_tcp_port) != 0  # nothing listens there


def test_the_unit_runs_the_real_cli_with_restart_reload_state_and_hardening(repo_root, tmp_path):
    sections = unit(repo_root)
    service = sections["Service"]
    argv = shlex.split(value(service, "ExecStart"))
    assert (
        Path(argv[0]).name in tomllib.loads((repo_root / "pyproject.toml").read_text())["project"]["scripts"]
    )
    args = cli._parser().parse_args(argv[1:])
    assert (args.command, args.config) == ("run", CONFIG_IN_IMAGE)

    # SIGHUP reloads the rules (tests/test_serve.py proves it on a real process).
    reload = shlex.split(value(service, "ExecReload"))
    assert reload[1:] == [f"-{signal.SIGHUP.name.removeprefix('SIG')}", "$MAINPID"]
    assert Path(reload[0]).name == "kill"
    assert value(service, "Restart") == "on-failure"
    assert value(service, "RestartPreventExitStatus") == str(cli.EXIT_INVALID)
    assert value(service, "User") not in ("root", "0")

    # The store lives in the state directory systemd creates: /var/lib/<StateDirectory>.
    config = load_config(image_etc(repo_root, tmp_path), environ=ENV)
    store_dir = Path(config.store.url.removeprefix("sqlite:///")).parent
    assert store_dir == Path("/var/lib") / value(service, "StateDirectory")
    assert value(service, "WorkingDirectory") == str(store_dir)
    timeout = float(value(service, "TimeoutStopSec").removesuffix("s"))
    assert timeout > config.server.drain_timeout.total_seconds()

    hardening = dict(service)
    for key, expected in {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
        "CapabilityBoundingSet": "",
    }.items():
        assert hardening.get(key) == expected, key


SYSTEMD_ANALYZE = shutil.which("systemd-analyze")


@pytest.mark.skipif(SYSTEMD_ANALYZE is None, reason="needs systemd-analyze (Debian's systemd package)")
def test_systemd_accepts_every_directive_of_the_unit(repo_root, tmp_path):
    """`systemd-analyze verify` on the unit, its binary path pointed at this checkout's `wattbridge`."""
    here = Path(sys.executable).parent / "wattbridge"
    assert here.exists()
    text = (repo_root / "deploy" / "wattbridge.service").read_text()
    installed = shlex.split(value(unit(repo_root)["Service"], "ExecStart"))[0]
    (tmp_path / "wattbridge.service").write_text(text.replace(installed, str(here)))
    done = subprocess.run(
        [str(SYSTEMD_ANALYZE), "verify", str(tmp_path / "wattbridge.service")],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    complaints = [line for line in done.stderr.splitlines() if "wattbridge.service" in line]
    assert complaints == [], complaints


def test_the_compose_file_runs_postgres_and_three_replicas_on_it_with_the_shipped_config(repo_root):
    import yaml

    compose = yaml.safe_load((repo_root / "deploy" / "compose.yaml").read_text())
    services = compose["services"]
    replicas = sorted(n for n in services if n.startswith("bridge-"))
    assert replicas == ["bridge-a", "bridge-b", "bridge-c"]
    urls = {services[n]["environment"]["WATTBRIDGE_STORE_URL"] for n in replicas}
    assert len(urls) == 1
    assert next(iter(urls)).startswith("postgresql://")
    assert "@db:5432/" in next(iter(urls))
    assert services["db"]["image"].startswith("postgres:")
    assert all(services[n]["depends_on"]["db"]["condition"] == "service_healthy" for n in replicas)
    # deploy/config.toml takes the store URL from the environment the replicas set
    assert "${WATTBRIDGE_STORE_URL:-" in (repo_root / "deploy" / "config.toml").read_text()
