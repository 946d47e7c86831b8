"""The process: SIGHUP reloads rules (an invalid set is refused, the last good set kept), SIGTERM drains
and exits 0. A real `python -m bridge run` subprocess."""

from __future__ import annotations

import asyncio
import signal
import sys
import textwrap

import aiohttp
import orjson

GOOD = (
    '[[rule]]\nid = "a"\nsource = "podero.wallbox"\nfield = "is_charging"\nto = true\n'
    'channels = ["partner"]\n'
)


async def wait_healthy(port: int, proc: asyncio.subprocess.Process) -> None:
    async with aiohttp.ClientSession() as session:
        for _ in range(100):  # bounded: the process needs a moment to import and bind
            if proc.returncode is not None:
                raise AssertionError(f"bridge exited early with {proc.returncode}")
            try:
                async with session.get(f"http://127.0.0.1:{port}/healthz") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError("bridge did not become healthy")


async def read_until(stream: asyncio.StreamReader, event: str) -> dict[str, object]:
    while True:
        line = await asyncio.wait_for(stream.readline(), timeout=10)
        assert line, f"log ended before {event}"
        record = orjson.loads(line)
        if record.get("event") == event:
            return record


async def test_sighup_reloads_rules_keeping_the_last_good_set_and_sigterm_exits_0(tmp_path, unused_tcp_port):
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "r.toml").write_text(GOOD)
    (tmp_path / "config.toml").write_text(
        textwrap.dedent(f"""
        [store]
        url = "sqlite:///{tmp_path / "b.db"}"
        [server]
        listen = "127.0.0.1:{unused_tcp_port}"
        [outbound]
        allow = ["127.0.0.0/8"]
        [channels.partner]
        kind = "webhook"
        url = "http://127.0.0.1:9/hooks"
        secret = "whsec_ZGVmYXVsdA=="
        """)
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bridge", "--log-format", "json", "run", "-c", str(tmp_path / "config.toml"),
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stderr is not None
    try:
        await wait_healthy(unused_tcp_port, proc)
        (tmp_path / "rules" / "r.toml").write_text(GOOD.replace('"partner"', '"nope"'))
        proc.send_signal(signal.SIGHUP)
        refused = await read_until(proc.stderr, "rules.reload_refused")
        assert refused["kept"] == 1
        assert "unknown channel 'nope'" in str(refused["problems"])
        (tmp_path / "rules" / "r.toml").write_text(GOOD + GOOD.replace('id = "a"', 'id = "b"'))
        proc.send_signal(signal.SIGHUP)
        reloaded = await read_until(proc.stderr, "rules.reloaded")
        assert reloaded["rules"] == 2
        proc.send_signal(signal.SIGTERM)
        await read_until(proc.stderr, "bridge.stopped")
        assert await asyncio.wait_for(proc.wait(), timeout=15) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
