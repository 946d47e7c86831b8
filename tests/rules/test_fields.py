"""The known field trees cover every field the simulators send, so no valid rule is refused."""

from __future__ import annotations

from bridge.clock import ManualClock
from bridge.poll.diff import flatten
from bridge.poll.health import HealthBoard
from bridge.providers.podero import with_status
from bridge.rules.fields import catalog, field_problem
from bridge.simulator.podero import PoderoSimulator
from bridge.simulator.realto import RealtoSimulator
from bridge.simulator.wattshift import WattShiftSimulator


def unknown_paths(source: str, state: dict[str, object]) -> list[str]:
    # Top-level names too, so volatile fields (which flatten drops) are checked: rules may name them.
    paths = flatten(state, source=source, keep=frozenset())
    paths |= dict.fromkeys(state)
    return [p for p in paths if field_problem(source, p.split("[", 1)[0]) is not None]


def test_every_field_of_the_simulated_payloads_is_a_known_field():
    clock = ManualClock()
    podero = PoderoSimulator(clock=clock)
    user = podero.add_user(email="ada@example.com")
    wallbox = podero.add_wallbox(user)
    podero.add_action(wallbox, "information", message="hello")
    session = podero.add_onboarding_session(user)
    realto = RealtoSimulator(clock=clock)
    failed = realto.add_session()
    realto.fail_session(failed, "OemRejected", "no")
    wattshift = WattShiftSimulator(clock=clock)
    home = wattshift.add_home()
    wattshift.start(home)
    board = HealthBoard()
    board.failure("podero", "boom", clock.now())

    states = {
        "podero.wallbox": podero.wallbox(wallbox),
        "podero.onboarding_session": with_status(podero.onboarding_session(session), clock.now()),
        "realto.guided_onboarding_session": realto.session(failed),
        "wattshift.onboarding": wattshift.status(home),
        "bridge.provider": board.get("podero").as_state(),
    }

    assert {source: unknown_paths(source, state) for source, state in states.items()} == {
        source: [] for source in states
    }
    assert set(catalog()) >= set(states)
