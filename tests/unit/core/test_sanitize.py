"""Masking, truncation and UTF-8 safety of everything that leaves the process (otel_plugin.core.sanitize)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from otel_plugin.core import sanitize
from testkit.airflow_local import installed_major

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
    # issue 19: forms that used to pass unchanged
    ("access_token=ya29.a0AfH6SMB", "ya29.a0AfH6SMB", "access_token=***"),
    ("refresh_token=1//0gXyZ-rt", "1//0gXyZ-rt", "refresh_token=***"),
    ("GITHUB_TOKEN=gho-plain-value-42", "gho-plain-value-42", "GITHUB_TOKEN=***"),
    ("db_password=Tr0ub4dor", "Tr0ub4dor", "db_password=***"),
    ("PGPASSWORD=pg-s3cret", "pg-s3cret", "PGPASSWORD=***"),
    ("MYSQL_PWD=my-s3cret", "my-s3cret", "MYSQL_PWD=***"),
    ("AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCY", "wJalrXUtnFEMI/K7MDENG/bPxRfiCY",
     "AWS_SECRET_ACCESS_KEY=***"),
    ("AIRFLOW__CORE__FERNET_KEY=81HqDtbqAywKSOumSha3BhWNOdQ26slT6K0YaZeZyPs=", "81HqDtbqAywKSOumSha3BhWNOdQ26",
     "AIRFLOW__CORE__FERNET_KEY=***"),
    ("Authorization: Token 9944b09199c62bcf9418ad846dd0e4bb", "9944b09199c62bcf9418ad846dd0e4bb",
     "Authorization: ***"),
    ("-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA1x\n-----END RSA PRIVATE KEY-----", "MIIEpAIBAAKCAQEA1x",
     "failed: *** (retrying)"),
    ("-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA", "b3BlbnNzaC1rZXktdjEAAAAA", "failed: ***"),
    ("postgresql://etl:pa/ss@word@db:5432/x", "pa/ss@word", "postgresql://etl:***@db:5432/x"),
    ("mysql://root:a@b/c@db/x", "a@b/c", "mysql://root:***@db/x"),
    ("https://b.s3.amazonaws.com/k?X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F2026&X-Amz-Signature=fe5f80f77d5fa3be",
     "fe5f80f77d5fa3be", "X-Amz-Signature=***"),
    ("https://a.blob.core.windows.net/c/b?sv=2022-11-02&sig=Zm9vYmFyYmF6cXV4%3D&se=2026", "Zm9vYmFyYmF6cXV4",
     "sig=***&se=2026"),
    ("DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OU==;",
     "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OU", "AccountKey=***;"),
    ("push with ghp_16C7e42F292c6912E7710c838347Ae178B4a now", "ghp_16C7e42F292c6912E7710c838347Ae178B4a",
     "push with *** now"),
    ("slack xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx", "AbCdEfGhIjKlMnOpQrStUvWx", "slack ***"),
    ("posting to https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX",
     "T00000000/B00000000", "https://hooks.slack.com/services/***"),
    ("temporary key ASIAY34FZKBOKMUTVV7A expired", "ASIAY34FZKBOKMUTVV7A", "temporary key *** expired"),
]


@pytest.mark.parametrize(("text", "secret", "expected"), SECRETS, ids=[s[1] for s in SECRETS])
def test_secrets_are_masked(text: str, secret: str, expected: str) -> None:
    masked = sanitize.clean_text(f"failed: {text} (retrying)")
    assert secret not in masked
    assert expected in masked


@pytest.mark.parametrize("text", [
    "3 tokens processed", "password policy updated", "https://example.com:8080/a@b", "max_tokens: 100 sig",
    "design=final config=prod", "mailto:someone@example.com", "see https://example.com/a:b@c",
])
def test_ordinary_text_is_left_alone(text: str) -> None:
    assert sanitize.clean_text(text) == text


def test_a_secret_registered_with_airflow_is_masked_too() -> None:
    if installed_major() >= 3:
        from airflow.sdk.log import mask_secret
    else:
        from airflow.utils.log.secrets_masker import mask_secret

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


@pytest.mark.parametrize("key", ["password", "db_password", "API_KEY", "access_token", "my_secret", "pgpassword",
                                 "connection_string", "Authorization", "fernet_key", "webhook_url"])
def test_a_fact_under_a_sensitive_key_name_is_masked_as_airflow_redact_does(key: str) -> None:
    from otel_plugin import api

    api.begin_task(None, None)
    api.set_fact(key, "plain-value-123")
    api.set_fact("source_file", "s3://bucket/2026-11-27.csv")
    assert api.take_facts().extra == {key: "***", "source_file": "s3://bucket/2026-11-27.csv"}


_pieces = st.sampled_from([s[0] for s in SECRETS] + [
    "dag_id", "run_id", "scheduled__2026-12-01T00:00:00+00:00", " ", ":", "=", "://", "@", "'", '"', "sig",
    "Token", "bearer", "BASIC ", "-----BEGIN ", "eyJ", "gho_", "xoxb-", "AKIA", "hooks.slack.com/", "\n",
])


@settings(max_examples=400, deadline=None)
@given(st.lists(st.one_of(_pieces, st.text(max_size=12)), max_size=8).map("".join))
def test_the_prefilter_never_changes_what_the_patterns_mask(text: str) -> None:
    # mask_secrets skips the patterns when _MAYBE_SECRET finds nothing: that must never leave a secret.
    assert sanitize._MAYBE_SECRET.search(text) or sanitize.mask_patterns(text) == text
