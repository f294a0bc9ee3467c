"""`jibri-sandbox focus`, the Jicofo-like controller, against simulated Jibris on real Prosody."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from sim import occupy, other_controller

from jibri_operator.api.types import Dialect
from jibri_sandbox.focus import Focus
from jibri_sandbox.jibri import Faults
from jibri_sandbox.prosody import Prosody

pytestmark = pytest.mark.e2e
MEETING = "meeting@conference.localhost"
FocusFactory = Callable[..., Awaitable[Focus]]


@pytest.fixture
async def focus(
    prosody: Prosody, xmpp_account: Callable[..., tuple[str, str]]
) -> AsyncIterator[FocusFactory]:
    made: list[Focus] = []

    async def create(brewery: str, **options: Any) -> Focus:
        jid, password = xmpp_account("focus")
        client = Focus(
            jid,
            password,
            brewery,
            nickname=f"focus-{uuid.uuid4().hex[:6]}",
            ca_file=prosody.ca_file,
            **options,
        )
        await client.join(prosody.host, prosody.port)
        made.append(client)
        return client

    yield create
    for client in made:
        await client.close()


@pytest.mark.parametrize(
    "settings",
    [
        {"dialect": Dialect.CURRENT},
        {"dialect": Dialect.LEGACY},
        {"dialect": Dialect.LEGACY, "legacy_reports": True},
    ],
    ids=["current", "legacy", "legacy-with-reports"],
)
async def test_records_and_stops_in_each_dialect(
    brewery: str, focus: FocusFactory, simulated_jibri: Any, settings: dict[str, Any]
) -> None:
    jibri = await simulated_jibri(brewery, **settings)
    controller = await focus(brewery, wait_for_jibri=10)
    recording = await controller.record(MEETING, duration=0.3)
    assert recording.outcome == "recorded" and recording.jibri == jibri.occupants[0].rpartition("/")[2]
    assert recording.attempts == 1
    (start,) = jibri.starts
    assert start.room == MEETING
    await jibri.wait_until(lambda j: not j.busy, 5)


async def test_a_busy_answer_sends_it_to_another_jibri(
    prosody: Prosody,
    brewery: str,
    focus: FocusFactory,
    simulated_jibri: Any,
    xmpp_account: Callable[..., tuple[str, str]],
) -> None:
    """The Jibri was taken by someone else a moment ago (its busy presence still in flight)."""
    taken = await simulated_jibri(brewery, dialect=Dialect.LEGACY, faults=Faults(busy_presence_delay=60))
    free = await simulated_jibri(brewery, healthy=False)
    controller = await focus(brewery, wait_for_jibri=15, max_attempts=50)
    async with other_controller(prosody, brewery, xmpp_account) as rival:
        await occupy(rival, taken, f"elsewhere@{prosody.muc_domain}")
        attempt = asyncio.create_task(controller.record(MEETING, duration=0.2))
        await taken.wait_until(lambda j: j.refusals >= 1, 10)  # only the taken one looked idle
        free.set_healthy(True)
        recording = await attempt
    assert recording.outcome == "recorded" and recording.busy_answers >= 1
    assert recording.jibri == free.occupants[0].rpartition("/")[2]
    assert len(taken.starts) == 1, "only the rival's start took"


async def test_a_recently_failed_jibri_is_avoided(
    brewery: str, focus: FocusFactory, simulated_jibri: Any
) -> None:
    flaky = await simulated_jibri(brewery, faults=Faults(start_fails=True, start_fails_should_retry=True))
    controller = await focus(brewery, wait_for_jibri=10, max_attempts=3)
    good = await simulated_jibri(brewery, healthy=False)
    good.set_healthy(True)
    recording = await controller.record(MEETING, duration=0.2)
    assert recording.outcome == "recorded"
    assert recording.jibri == good.occupants[0].rpartition("/")[2]
    assert len(flaky.starts) <= 1, "a Jibri that failed is not asked again within the minute"
