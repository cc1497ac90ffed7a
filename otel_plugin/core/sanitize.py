"""Make untrusted values safe to export: never raise, mask secrets, bound sizes, valid UTF-8.

Exception text and task attributes come from user code: ``str()`` may raise, bytes may not be UTF-8,
messages may be megabytes long or carry a connection password. Everything that leaves the process goes
through here. Size limits keep every event under the stores' limits (Loki: 64 KB and 128 entries of
structured metadata per line; VictoriaLogs: 256 KB per line by default).
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any

log = logging.getLogger(__name__)

MAX_VALUE_CHARS = 4096
MAX_ATTRIBUTES = 100
MAX_TOTAL_BYTES = 48_000  # UTF-8 bytes, as Loki counts them: one character can take four
MASK = "***"

# Key names whose values are secrets wherever they appear: Airflow's DEFAULT_SENSITIVE_FIELDS
# (airflow.sdk._shared.secrets_masker), which its ``redact`` uses to mask by key name, plus the forms the
# review of issue 19 found passing: pwd (MYSQL_PWD), fernet_key, signature (X-Amz-Signature), account_key
# (Azure), credentials, session ids. A key *containing* one of them is sensitive, as in Airflow.
SENSITIVE_KEY_PARTS = (
    "access_key", "access_token", "api_key", "apikey", "auth_header", "authorization", "bearer",
    "connection_string", "dsn", "passphrase", "passwd", "password", "private_key", "proxy_password",
    "secret", "service_account", "service_key", "token", "keyfile_dict", "webhook_url",
    "pwd", "fernet_key", "signature", "accountkey", "account_key", "credential", "session_id", "sas_token",
)
# In free text a key is matched when it *ends* in one of these (GITHUB_TOKEN, db_password, PGPASSWORD,
# AWS_SECRET_ACCESS_KEY, X-Amz-Signature), with any prefix of word characters, dots and dashes.
_SENSITIVE = (
    r"password|passwd|pwd|passphrase|secret|token|api[_-]?key|access[_-]?key|secret[_-]?key|private[_-]?key"
    r"|client[_-]?secret|credentials?|session[_-]?id|fernet[_-]?key|signature|account[_-]?key"
    r"|connection[_-]?string|dsn|webhook[_-]?url|authorization"
)
_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # PEM private keys, whole (to the end of the text if the END line was cut off)
    (re.compile(r"-----BEGIN [A-Z ]{0,40}PRIVATE KEY-----[\s\S]*?(?:-----END [A-Z ]{0,40}PRIVATE KEY-----|\Z)"),
     MASK),
    # scheme://user:password@host, also when the password holds "/" or "@" (up to the last "@" of the URL)
    # but not host:port/path@x. (Bounded repeats: unbounded ones make this quadratic on long text.)
    (re.compile(r"([a-zA-Z][\w+.-]{0,31}://[^:/\s@]{0,256}:)(?!\d{1,5}(?:/|\s|$))([^\s]{1,512})(@[^\s@/]*)"),
     r"\1" + MASK + r"\3"),
    # Slack incoming webhooks: the path is the secret
    (re.compile(r"(hooks\.slack\.com/(?:services|workflows|triggers)/)[\w/-]+"), r"\1" + MASK),
    # Authorization: <any scheme> <credentials>  (Bearer, Basic, Token, Digest, ...)
    (re.compile(r"(?i)((?<![\w.-])[\w.-]{0,64}authorization[\"']?\s*[=:]\s*[\"']?)(?:[a-z][\w-]{0,30}\s+)?[^\s\"',;}]+"),
     r"\1" + MASK),
    # Bearer <token>, Basic <credentials> elsewhere
    (re.compile(r"(?i)\b(bearer|basic)(\s+)[\w\-.~+/]+=*"), r"\1\2" + MASK),
    # password=..., "token": "...", api_key: ..., GITHUB_TOKEN=..., X-Amz-Signature=..., Azure sig=...:
    # a whole key token (never started mid-token, so the scan stays linear) ending in a sensitive word
    (
        re.compile(
            rf"(?i)(?<![\w.-])([\w.-]{{0,96}}(?:{_SENSITIVE})|sig)"
            rf"([\"']?\s*[=:]\s*)(\"[^\"]*\"|'[^']*'|[^\s,;&\"'}}]+)"
        ),
        r"\1\2" + MASK,
    ),
    (re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"), MASK),  # AWS access key ids (long-term, temporary)
    (re.compile(r"\beyJ[\w-]{4,}\.[\w-]{4,}\.[\w-]{4,}"), MASK),  # JWT
    (re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{20,}|github_pat_\w{20,})"), MASK),  # GitHub tokens
    (re.compile(r"\bxox[abposre]-[A-Za-z0-9-]{8,}"), MASK),  # Slack tokens
)

# What every pattern above needs somewhere in the text (a superset: it may match where none of them does).
# Most values (ids, states, dates) have none of it and skip the ten substitutions: they were 40 % of a task
# try's hook time.
_MAYBE_SECRET = re.compile(
    rf"(?i)-----BEGIN|://|hooks\.slack\.com/|authorization|bearer|basic|(?:{_SENSITIVE}|sig)[\"']?\s*[=:]"
    r"|AKIA|ASIA|eyJ|gh[pousr]_|github_pat_|xox[abposre]-"
)


def sensitive_key(name: object) -> bool:
    """Whether a value stored under this key name is a secret (as Airflow's ``redact`` decides)."""
    lowered = safe_str(name).lower()
    if any(part in lowered for part in SENSITIVE_KEY_PARTS):
        return True
    if "airflow" not in sys.modules:  # a job process (otel_plugin.job) must not import Airflow
        return False
    for module in ("airflow.sdk._shared.secrets_masker", "airflow._shared.secrets_masker"):
        try:  # also honours [core] sensitive_var_conn_names
            return bool(__import__(module, fromlist=["should_hide_value_for_key"]).should_hide_value_for_key(name))
        except Exception:
            continue
    return False


def _airflow_redactors() -> list[Callable[[str], Any]]:
    """Airflow's own secrets maskers (task SDK and core), so secrets Airflow knows are masked too.

    Only in a process that already imported Airflow: a job process (otel_plugin.job) must not import it.
    """
    found: list[Callable[..., Any]] = []
    if "airflow" not in sys.modules:
        return found
    for module in ("airflow.sdk._shared.secrets_masker", "airflow._shared.secrets_masker",
                   "airflow.utils.log.secrets_masker"):
        try:
            found.append(__import__(module, fromlist=["redact"]).redact)
        except Exception:
            continue
    return found


_redactors: list[Callable[[str], Any]] | None = None


def safe_str(value: object) -> str:
    """``str(value)`` that never raises and always returns valid UTF-8 text."""
    if isinstance(value, bytes):
        text = value.decode("utf-8", "replace")
    else:
        try:
            text = value if isinstance(value, str) else str(value)
        except Exception:
            try:
                text = f"<unprintable {type(value).__name__}>"
            except Exception:
                text = "<unprintable>"
    return text.encode("utf-8", "replace").decode("utf-8") if _has_surrogates(text) else text


def _has_surrogates(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def truncate(text: str, limit: int = MAX_VALUE_CHARS, original_length: int | None = None) -> str:
    length = len(text) if original_length is None else original_length
    if length <= limit:
        return text
    marker = f"...[truncated {length - limit} chars]"
    return text[: max(0, limit - len(marker))] + marker


def mask_secrets(text: str) -> str:
    global _redactors
    if _redactors is None:
        _redactors = _airflow_redactors()
    for redact in _redactors:
        try:
            redacted = redact(text)
        except Exception:
            continue
        if isinstance(redacted, str):
            text = redacted
    return mask_patterns(text) if _MAYBE_SECRET.search(text) else text


def mask_patterns(text: str) -> str:
    """Every secret pattern applied to ``text`` (mask_secrets calls it only when _MAYBE_SECRET finds a cue)."""
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def clean_text(value: object, limit: int = MAX_VALUE_CHARS) -> str:
    """The one way free text (error messages, user facts) is prepared for export."""
    text = safe_str(value)
    # Mask a window twice the kept size, then cut: masking stays cheap on megabyte messages, and a secret
    # split by the window edge lies beyond the final cut.
    return truncate(mask_secrets(text[: 2 * limit]), limit, original_length=len(text))


def attribute_value(value: object) -> str | bool | int | float:
    """Coerce to a type OTLP attributes accept; anything else becomes masked, bounded text."""
    if isinstance(value, bool | float):
        return value
    if isinstance(value, int):
        return value if -(2**63) <= value < 2**63 else str(value)
    return clean_text(value)


def bound_attributes(
    attributes: Mapping[str, object], keep_first: Iterable[str] = ()
) -> dict[str, str | bool | int | float]:
    """Drop None, coerce values, and cap the count and total size; ``keep_first`` keys are kept in priority."""
    priority = [k for k in keep_first if k in attributes]
    order = priority + [k for k in attributes if k not in set(priority)]
    bounded: dict[str, str | bool | int | float] = {}
    total = 0
    dropped = 0
    for key in order:
        value = attributes[key]
        if value is None:
            continue
        coerced = attribute_value(value)
        name = truncate(safe_str(key), 128)
        size = len(name.encode()) + (len(coerced.encode()) if isinstance(coerced, str) else 8)
        if len(bounded) >= MAX_ATTRIBUTES - 1 or total + size > MAX_TOTAL_BYTES:
            dropped += 1
            continue
        bounded[name] = coerced
        total += size
    if dropped:
        bounded["dropped_attributes"] = dropped
    return bounded
