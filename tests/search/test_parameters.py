"""The search parameters' patterns in the API document accept exactly what the view's
parsers accept, so a client that follows the document is never refused for the form."""

from __future__ import annotations

import re

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from detector.services.errors import InvalidInput
from detector.services.search import (
    LABELS_PATTERN,
    MAX_LABELS_LENGTH,
    MAX_ZONE_LENGTH,
    ZONE_PATTERN,
    parse_labels,
    split_zone,
)

ANALYTICS_ID = "0123456789abcdef"


def accepted(parse, text: str) -> bool:
    try:
        parse(text)
    except InvalidInput:
        return False
    return True


def declared(pattern: str, max_length: int, text: str) -> bool:
    return len(text) <= max_length and re.search(pattern, text) is not None


@given(st.from_regex(ZONE_PATTERN))
def test_every_zone_the_document_allows_is_read(text):
    assert accepted(split_zone, text) == (len(text) <= MAX_ZONE_LENGTH)


@given(
    st.one_of(
        st.text(),
        st.builds(
            lambda pre, name: f"{pre}{ANALYTICS_ID}:{name}", st.sampled_from(["", " ", "\n", "x"]), st.text()
        ),
    )
)
# White space is the six ASCII characters, both ways: str.strip() alone strips more.
@example(f"{ANALYTICS_ID}:\x1c")
@example(f"{ANALYTICS_ID}:\u2003")
def test_a_zone_is_read_when_and_only_when_the_document_allows_it(text):
    assert accepted(split_zone, text) == declared(ZONE_PATTERN, MAX_ZONE_LENGTH, text)


@given(st.one_of(st.text(), st.lists(st.text(max_size=5), min_size=1, max_size=12).map(",".join)))
@example("person,\x1c")
def test_labels_are_read_when_and_only_when_the_document_allows_them(text):
    assert accepted(parse_labels, text) == declared(LABELS_PATTERN, MAX_LABELS_LENGTH, text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"{ANALYTICS_ID}:door", (ANALYTICS_ID, "door")),
        (f"  {ANALYTICS_ID}:front door \n", (ANALYTICS_ID, "front door")),
        (f"{ANALYTICS_ID}:a:b", (ANALYTICS_ID, "a:b")),
    ],
)
def test_a_zone_is_its_analytics_id_and_name(text, expected):
    assert split_zone(text) == expected


@pytest.mark.parametrize(
    "text", ["door", f"{ANALYTICS_ID}:", f"{ANALYTICS_ID}: \t", "0123:door", f"{ANALYTICS_ID}:a\x00"]
)
def test_a_zone_of_another_form_is_refused_with_its_form(text):
    with pytest.raises(InvalidInput, match=r"^zone: give <analytics id>:<zone name>"):
        split_zone(text)
