from __future__ import annotations

import pytest

from jibri_operator.api.conditions import get_condition, set_condition
from jibri_operator.api.durations import parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"), [("90s", 90), ("5m", 300), ("1h30m", 5400), ("250ms", 0.25), ("1.5h", 5400)]
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "90", "5 m", "1d", "-3s", "s"])
def test_bad_durations_name_the_form(text: str) -> None:
    with pytest.raises(ValueError, match=r"use e\.g\. 90s"):
        parse_duration(text)


def test_transition_time_moves_only_when_status_changes() -> None:
    first = set_condition(None, "Ready", "False", "Connecting", "...", 1, now="t1")
    same = set_condition(first, "Ready", "False", "StillConnecting", "...", 2, now="t2")
    flipped = set_condition(same, "Ready", "True", "Joined", "ok", 2, now="t3")
    assert get_condition(same, "Ready") == {
        "type": "Ready",
        "status": "False",
        "reason": "StillConnecting",
        "message": "...",
        "lastTransitionTime": "t1",
        "observedGeneration": 2,
    }
    assert get_condition(flipped, "Ready")["lastTransitionTime"] == "t3"  # type: ignore[index]
    assert len(set_condition(flipped, "Connected", "True", "Joined", "ok", now="t4")) == 2
