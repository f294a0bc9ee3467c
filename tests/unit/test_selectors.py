"""Label selectors, as apimachinery evaluates them."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jibri_operator.api.selectors import selector_matches

TEAM = {"team": "media", "tier": "prod"}


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ({}, True),
        ({"matchLabels": {"team": "media"}}, True),
        ({"matchLabels": {"team": "media", "tier": "dev"}}, False),
        ({"matchExpressions": [{"key": "tier", "operator": "In", "values": ["prod", "staging"]}]}, True),
        ({"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["prod"]}]}, False),
        ({"matchExpressions": [{"key": "missing", "operator": "NotIn", "values": ["x"]}]}, True),
        ({"matchExpressions": [{"key": "team", "operator": "Exists"}]}, True),
        ({"matchExpressions": [{"key": "team", "operator": "DoesNotExist"}]}, False),
        (
            {
                "matchLabels": {"team": "media"},
                "matchExpressions": [{"key": "tier", "operator": "In", "values": ["dev"]}],
            },
            False,
        ),
    ],
)
def test_examples(selector: dict[str, object], expected: bool) -> None:
    assert selector_matches(selector, TEAM) is expected


@pytest.mark.parametrize(
    ("requirement", "field"),
    [
        ({"operator": "Exists"}, "key"),
        ({"key": "a", "operator": "In"}, "values"),
        ({"key": "a", "operator": "Exists", "values": ["x"]}, "values"),
        ({"key": "a", "operator": "Near", "values": ["x"]}, "operator"),
    ],
)
def test_invalid_requirements_name_the_field(requirement: dict[str, object], field: str) -> None:
    with pytest.raises(ValueError, match=rf"matchExpressions\[0\]\.{field}"):
        selector_matches({"matchExpressions": [requirement]}, TEAM)


labels = st.dictionaries(st.sampled_from("abc"), st.sampled_from("xyz"), max_size=3)


@given(labels, labels)
def test_match_labels_is_a_subset_test(wanted: dict[str, str], have: dict[str, str]) -> None:
    assert selector_matches({"matchLabels": wanted}, have) is (wanted.items() <= have.items())


@given(st.sampled_from("abc"), st.lists(st.sampled_from("xyz"), min_size=1), labels)
def test_in_and_notin_are_complements(key: str, values: list[str], have: dict[str, str]) -> None:
    def matches(operator: str) -> bool:
        return selector_matches(
            {"matchExpressions": [{"key": key, "operator": operator, "values": values}]}, have
        )

    assert matches("In") is not matches("NotIn")
