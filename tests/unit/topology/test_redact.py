"""URLs as people may read them: the password of the user info, a lone user
name (often a token), every query value and the fragment masked; scheme,
host, port and path kept."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from topology.document import Reader, redact_url, redact_urls
from topology.yamltree import compose


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (
            "http://alice:s3cret@127.0.0.1:8080/path?token=abc",
            "http://alice:***@127.0.0.1:8080/path?token=***",
        ),
        ("https://ghp_T0KEN@git.example/x", "https://***@git.example/x"),
        ("http://h/p?a=1&b=&c#frag", "http://h/p?a=***&b=&***#***"),
        ("http://[::1]:9093/api?x=y", "http://[::1]:9093/api?x=***"),
        ("http://u:@h/", "http://u:@h/"),
        ("http://127.0.0.1:8081/health", "http://127.0.0.1:8081/health"),
        ("htp://alice:s3cret@h?token=abc", "htp://alice:***@h?token=***"),
        ("alice:s3cret@h:80/x", "alice:***@h:80/x"),
        ("", ""),
    ],
)
def test_it_masks_what_a_url_carries_and_keeps_where_it_points(url: str, shown: str) -> None:
    assert redact_url(url) == shown
    assert redact_url(shown) == shown


def test_it_masks_every_url_in_a_message_and_leaves_the_words() -> None:
    message = (
        "cannot reach http://alice:s3cret@10.0.0.1/x?token=abc, nor (https://t0k@h/y). "
        "expected an http:// or https:// URL"
    )
    assert redact_urls(message) == (
        "cannot reach http://alice:***@10.0.0.1/x?token=***, nor (https://***@h/y). "
        "expected an http:// or https:// URL"
    )


@given(
    password=st.text(alphabet="abcdefXYZ0123456789-_.~!$", min_size=1, max_size=20),
    token=st.text(alphabet="abcdefXYZ0123456789-_.~", min_size=1, max_size=20),
)
def test_no_password_nor_query_value_survives(password: str, token: str) -> None:
    url = f"https://user:{password}@example.org:8443/p/a/t/h?k={token}&other={token}"
    shown = redact_url(url)
    assert shown == "https://user:***@example.org:8443/p/a/t/h?k=***&other=***"


def test_a_url_problem_quotes_the_url_redacted() -> None:
    reader = Reader("estate.yaml")
    node = compose("ftp://alice:s3cret@127.0.0.1:1/x?token=abc")
    assert node is not None
    assert reader.url(node, "nodes.a.probes[0].http") is None
    [problem] = reader.problems
    assert str(problem) == (
        "estate.yaml:1: nodes.a.probes[0].http: expected an http:// or https:// URL, "
        "got 'ftp://alice:***@127.0.0.1:1/x?token=***'"
    )
