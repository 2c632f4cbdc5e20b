"""GitHub's pure parts: published signature vectors, magic words, review status, pagination's links."""

from __future__ import annotations

import json
from typing import Any, cast

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from integrations.github import magic_words
from integrations.github.client import paginate
from integrations.github.config import GithubSettings
from integrations.github.payloads import PullRequest
from integrations.github.pull_requests import review_status
from integrations.github.verify import signature, signature_matches
from worker.sdk import Context, PermanentError


@pytest.mark.parametrize(
    ("secret", "payload", "expected"),
    [
        # G1: GitHub docs, "Testing the webhook payload validation"
        ("It's a Secret to Everybody", b"Hello, World!",
         "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"),
        # G2: octokit/webhooks-methods sign test
        ("mysecret", b'{"foo":"bar"}', "sha256=4864d2759938a15468b5df9ade20bf161da9b4f737ea61794142f3484236bda3"),
        # G3: the same object as GitHub sends it (indented, trailing newline): other bytes, other signature
        ("mysecret", (json.dumps({"foo": "bar"}, indent=2) + "\n").encode(),
         "sha256=e3eccac34c43c7dc1cbb905488b1b81347fcc700a7b025697a9d07862256023f"),
    ],
)  # fmt: skip
def test_published_github_signature_vectors(secret: str, payload: bytes, expected: str) -> None:
    assert signature(secret.encode(), payload) == expected
    assert signature_matches(secret.encode(), payload, expected)
    assert not signature_matches(secret.encode(), payload + b" ", expected)


@pytest.mark.parametrize("header", [None, "", "sha256=", "sha1=abc", "sha256=" + "0" * 64, "garbage\u00e9"])
def test_wrong_or_malformed_signatures_do_not_match(header: str | None) -> None:
    assert not signature_matches(b"secret", b"{}", header)


def _extract(
    title: str, body: str = "", *, merged: bool = False, status: str = "pending", reviewers: bool = False
) -> list[tuple[str, str]]:
    return [
        (a.task_ref, a.status)
        for a in magic_words.extract(title, body, merged=merged, review_status=status, has_reviewers=reviewers)
    ]


def test_magic_words_keep_the_prefix_and_follow_mimrai_statuses() -> None:
    assert _extract("Fixes ABC-12", "refs xy-3, and closes ABC-13") == [
        ("ABC-12", "in_progress"),
        ("XY-3", "in_progress"),
        ("ABC-13", "in_progress"),
    ]
    assert _extract("Fixes ABC-12", merged=True) == [("ABC-12", "done")]
    assert _extract("refs ABC-12", merged=True) == [("ABC-12", "in_progress")]  # progress words never close
    assert _extract("Resolves ABC-12", status="review_requested") == [("ABC-12", "review")]
    assert _extract("implements ABC-12", reviewers=True) == [("ABC-12", "review")]
    assert _extract("Fixes ABC-12 and fixes ABC-12") == [("ABC-12", "in_progress")]
    assert _extract("prefixes ABC-12 / fixesABC-12 / fixes A-1 / fixes ABCDEFGHIJKL-1") == []


def _pr(**fields: object) -> PullRequest:
    base: dict[str, object] = {
        "id": 1, "number": 1, "title": "t", "state": "open", "html_url": "u", "updated_at": "2026-11-20T00:00:00Z",
    }  # fmt: skip
    return PullRequest.model_validate({**base, **fields})


def test_review_status_derivation() -> None:
    assert review_status(_pr(merged=True, state="closed")) == "approved"
    assert review_status(_pr(state="closed")) == "closed"
    assert review_status(_pr(draft=True, requested_reviewers=[{"login": "a", "id": 2}])) == "pending"
    assert review_status(_pr(requested_reviewers=[{"login": "a", "id": 2}])) == "review_requested"
    assert review_status(_pr()) == "pending"


_WORDS = st.sampled_from(
    ["fixes", "Closes", "refs", "wip", "works-on", "start", "prefix", "ABC-12", "xy-3", "A-1", "AB-1-2",
     "the-fixes", "x-works-on", "wip-start", "fixe\u017f", "wor\u212as-on", "FIXES\u00e9", "-", "_",
     "ABCDEFGHIJK-1", "ABCDEFGHIJKL-1", "AB-\u0663", "x9-1-2", "\u2003"]
)  # fmt: skip
_CHARS = "aBz9-_ \n\t\u00e9\u212a\u017f\u0663\u2003"  # \u0663: an Arabic-Indic 3; \u2003: an em space
_TEXT = st.lists(st.one_of(_WORDS, st.text(alphabet=_CHARS, max_size=6)), max_size=12).map(" ".join)


@settings(max_examples=1000)
@given(_TEXT)
def test_fast_magic_word_matching_finds_exactly_what_mimrais_pattern_finds(text: str) -> None:
    expected = [(m.group(1), m.group(2).upper(), int(m.group(3))) for m in magic_words.MIMRAI_PATTERN.finditer(text)]
    assert list(magic_words._matches(text)) == expected


@pytest.mark.parametrize(
    "link",
    [
        "https://evil.example/installation/repositories?page=2",
        "https://api.github.test.evil.example/installation/repositories?page=2",
        "https://api.github.test@evil.example/installation/repositories?page=2",
        "http://api.github.test/installation/repositories?page=2",
    ],
)
async def test_paginate_refuses_a_link_header_pointing_outside_the_api(link: str) -> None:
    """The installation token goes only to GitHub's API: a `next` link elsewhere is not followed."""
    seen: list[str] = []

    def github(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        headers = {"Link": f'<{link}>; rel="next"'} if len(seen) == 1 else {}
        return httpx.Response(200, json=[{"id": len(seen)}], headers=headers)

    class Cache:
        async def get_or_compute(self, key: str, compute: Any) -> str:
            return "ghs_token"

    class Stub:
        cache = Cache()
        http = httpx.AsyncClient(transport=httpx.MockTransport(github))

        def settings_as(self, model: type[GithubSettings]) -> GithubSettings:
            return GithubSettings(api_url="https://api.github.test")

    with pytest.raises(PermanentError, match="outside its API"):
        await paginate(cast(Context, Stub()), 42, "/installation/repositories", key=None)

    assert seen == ["https://api.github.test/installation/repositories?per_page=100"]
