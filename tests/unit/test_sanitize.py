"""Masking, truncation and UTF-8 safety of everything that leaves the process (otel_plugin.core.sanitize)."""

from __future__ import annotations

import pytest

from otel_plugin.core import sanitize

SECRETS = [
    ("postgresql://etl:hunter2@db:5432/x", "hunter2", "postgresql://etl:***@db"),
    ("redis://:s3cr3tpw@cache:6379/0", "s3cr3tpw", "redis://:***@cache"),
    ("Authorization: Bearer abc.def-GHI_123", "abc.def-GHI_123", "Authorization: ***"),
    ("header Basic dXNlcjpwYXNz", "dXNlcjpwYXNz", "Basic ***"),
    ('{"user": "etl", "password": "p@ss w0rd!"}', "p@ss w0rd!", '"password": ***'),
    ("{'api_key': 'k-123456'}", "k-123456", "'api_key': ***"),
    ("token=tok_abcdef&x=1", "tok_abcdef", "token=***&x=1"),
    ("client_secret: cs-99887766", "cs-99887766", "client_secret: ***"),
    ("key AKIAIOSFODNN7EXAMPLE used", "AKIAIOSFODNN7EXAMPLE", "key *** used"),
    ("jwt eyJhbGciOi.eyJzdWIiOi.SflKxwRJSM", "eyJhbGciOi.eyJzdWIiOi.SflKxwRJSM", "jwt ***"),
]


@pytest.mark.parametrize(("text", "secret", "expected"), SECRETS, ids=[s[1] for s in SECRETS])
def test_secrets_are_masked(text: str, secret: str, expected: str) -> None:
    masked = sanitize.clean_text(f"failed: {text} (retrying)")
    assert secret not in masked
    assert expected in masked


@pytest.mark.parametrize("text", ["3 tokens processed", "password policy updated", "https://example.com:8080/a@b"])
def test_ordinary_text_is_left_alone(text: str) -> None:
    assert sanitize.clean_text(text) == text


def test_a_secret_registered_with_airflow_is_masked_too() -> None:
    from airflow.sdk.log import mask_secret

    mask_secret("correct-horse-battery-staple")
    masked = sanitize.clean_text("login with correct-horse-battery-staple failed")
    assert "correct-horse-battery-staple" not in masked and "***" in masked


def test_a_secret_at_the_cut_does_not_escape() -> None:
    text = "x" * 4080 + " password=averylongsecretvalue1234567890"
    cut = sanitize.clean_text(text)
    assert len(cut) <= sanitize.MAX_VALUE_CHARS
    assert "averylongsecret" not in cut and "truncated" in cut


def test_safe_str_never_raises_and_is_valid_utf8() -> None:
    class Bad:
        def __str__(self) -> str:
            raise ValueError("no")

    assert sanitize.safe_str(Bad()) == "<unprintable Bad>"
    assert sanitize.safe_str(b"\xff\xfeok") == "\ufffd\ufffdok"
    assert sanitize.safe_str("a\udcffb").encode("utf-8") == b"a?b"


def test_attribute_values_are_otlp_types() -> None:
    assert sanitize.attribute_value(2**70) == str(2**70)
    assert sanitize.attribute_value(True) is True
    assert sanitize.attribute_value([1, "password=x"]) == "[1, 'password=***']"


def test_attributes_are_capped_by_count_and_bytes_keeping_priority_fields() -> None:
    attrs = {f"fact.{i}": "\U0001f600" * 4000 for i in range(200)}
    attrs["run_id"] = "r1"
    bounded = sanitize.bound_attributes(attrs, keep_first=["run_id"])
    assert next(iter(bounded)) == "run_id"
    assert len(bounded) <= sanitize.MAX_ATTRIBUTES
    assert sum(len(k.encode()) + len(str(v).encode()) for k, v in bounded.items()) <= 64 * 1024
    assert bounded["dropped_attributes"] == len(attrs) - (len(bounded) - 1)  # all but the kept ones
