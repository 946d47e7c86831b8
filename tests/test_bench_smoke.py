"""The poll benchmarks still run (tiny sizes, no figures asserted): they must not rot between releases.

Speed is measured by `make bench`, never here; these only prove each script works end to end against
the simulator process and reports what it is meant to report.
"""

from __future__ import annotations

import itertools
import json
import os

import pytest

from bench import channels, memory, nodered, poll, replicas_compare, scale
from bench.common import HERE, simulator
from tests.store.conftest import NO_PG


def test_poll_benchmark_measures_the_bridge_against_its_ceiling_with_deliveries():
    figures = poll.main(
        ["--wallboxes", "40", "--repeat", "1", "--concurrency", "4", "--scenarios", "changing"]
    )
    assert set(figures) == {"changing"}
    assert figures["changing"]["ratio"] > 0
    assert figures["changing"]["cpu_us"] > 0


def test_memory_benchmark_reports_bytes_per_resource():
    figures = memory.main(["--wallboxes", "40", "--concurrency", "4"])
    assert "bytes_per_resource" in figures


def test_scale_benchmark_runs_the_real_scheduler_through_cycles():
    figures = scale.main(["--wallboxes", "20", "--interval", "0.2", "--minutes", "0", "--concurrency", "4"])
    assert figures["cycles"] >= 1


def test_node_red_flow_polls_filters_by_exception_and_posts():
    flow = {node["id"]: node for node in json.loads((HERE / "nodered_flow.json").read_text())}
    chain = ["next-wallboxes", "get-wallbox", "report-by-exception", "to-webhook", "post-webhook"]
    for a, b in itertools.pairwise(chain):
        assert flow[a]["wires"] == [[b]]
    assert (flow["get-wallbox"]["method"], flow["post-webhook"]["method"]) == ("GET", "POST")
    assert flow["report-by-exception"]["type"] == "rbe"
    assert nodered.node_red_missing() is None or "npm install node-red" in str(nodered.node_red_missing())


def test_channels_benchmark_measures_apprise_and_mqtt_beside_their_bare_clients():
    kinds = ["apprise", "mqtt"] if os.environ.get("WATTBRIDGE_TEST_MQTT") else ["apprise"]
    figures = channels.main(["--n", "20", "--repeat", "1", "--concurrency", "4", "--kind", *kinds])
    expected = {"apprise channel", "bare aiohttp POST"}
    if "mqtt" in kinds:
        expected |= {"mqtt channel", "bare aiomqtt"}
    assert set(figures) == expected
    assert all(f["sends_per_s"] > 0 for f in figures.values())


def test_contracts_benchmark_reports_each_cost():
    from bench import contracts

    figures = contracts.main(["--n", "20"])
    assert {"sign_1_secret_us", "sign_2_secrets_us", "guard_check_us", "schema_build_us"} <= set(figures)


def test_slowloris_benchmark_sees_every_attacking_socket_cut_off_and_healthz_answering():
    from bench import slowloris

    result = slowloris.main(
        ["--slow", "5", "--idle", "5", "--seconds", "1.5", "--trickle", "0.2", "--keepalive", "1s"]
    )
    assert (result.opened, result.closed, result.exit_code) == (10, 10, 0)
    assert all(p.latencies and p.failures == 0 for p in result.phases)


async def test_hostile_benchmark_reads_the_healthy_home_more_than_the_failing_one_and_notifies_its_change():
    from bench import hostile

    result = await hostile.run(500, interval=0.5, seconds=4.0)
    # Before #18 the healthy home was read once and nothing was sent; the fair share is every interval.
    assert result["healthy_reads"] > result["bad_reads"] >= 1
    assert result["change_notified"] == 1
    assert result["whole_provider_deferrals_logged"] == 0


@pytest.mark.skipif(not os.environ.get("WATTBRIDGE_TEST_PG"), reason=NO_PG)
@pytest.mark.timeout(180)  # three `wattbridge run` processes in turn on a loaded 2-core machine
async def test_replicas_compare_benchmark_counts_reads_and_deliveries_of_one_and_two_replicas():
    url = os.environ["WATTBRIDGE_TEST_PG"]
    with simulator(40, change_every=2) as sim:
        opts = {"wallboxes": 40, "seconds": 2.0, "rate": 1000, "concurrency": 8, "poll_interval": 0.25}
        for n in (1, 2):
            run = await replicas_compare.throughput(url, sim, replicas=n, shards=4, **opts)
            assert run.reads > 0
            assert run.deliveries > 0
            assert len(run.replica_cpu) == n
