"""Keep secrets out of logs.

``register_secret`` remembers a value (a password, an SK, a token); ``RedactingFilter`` replaces those
values, and the values of the ``X-Auth-Token``, ``X-Subject-Token``, ``X-Security-Token`` and
``Authorization`` headers, in every log record it sees. ``install_redaction`` attaches it.
"""

from __future__ import annotations

import logging
import re
import threading

__all__ = ["MASK", "RedactingFilter", "install_redaction", "redact", "register_secret"]

MASK = "**********"
# Shorter values would mask ordinary words all over the logs.
_MIN_SECRET_LENGTH = 4
# Prefect's run loggers have handlers of their own (the API log handler that writes logs to the database),
# and records logged on them are not seen by their parents' logger filters: they are named explicitly.
DEFAULT_LOGGERS = (
    "",
    "imsflow",
    "httpx",
    "httpcore",
    "prefect",
    "prefect.flow_runs",
    "prefect.task_runs",
    "prefect.extra",
)

_HEADER = re.compile(
    r"(?P<name>x-auth-token|x-subject-token|x-security-token|authorization)"
    r"(?P<sep>[\"']?\s*[:=,]\s*)"
    r"(?:\"(?P<dq>[^\"]*)\"|'(?P<sq>[^']*)'|(?P<raw>[^\r\n\"']+))",
    re.IGNORECASE,
)

_lock = threading.Lock()
_secrets: frozenset[str] = frozenset()


def register_secret(value: str) -> None:
    """Mask ``value`` wherever it appears in a log record from now on."""
    global _secrets
    if len(value) < _MIN_SECRET_LENGTH:
        return
    with _lock:
        _secrets = _secrets | {value}


def _mask_header(match: re.Match[str]) -> str:
    name, sep = match.group("name"), match.group("sep")
    if match.group("dq") is not None:
        return f'{name}{sep}"{MASK}"'
    if match.group("sq") is not None:
        return f"{name}{sep}'{MASK}'"
    return f"{name}{sep}{MASK}"


def redact(text: str) -> str:
    """``text`` with registered secrets and auth header values masked."""
    # Longest first, so a secret that contains another is masked as a whole.
    for secret in sorted(_secrets, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, MASK)
    return _HEADER.sub(_mask_header, text)


class RedactingFilter(logging.Filter):
    """Masks secrets in the message and arguments of each record (never drops a record)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # a broken format string; leave it to the handler to report
            return True
        cleaned = redact(message)
        if cleaned != message:
            # Merge the arguments into the message: masking them one by one would miss secrets that
            # only appear once formatted (a header dict, a request repr).
            record.msg = cleaned
            record.args = None
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


_filter = RedactingFilter()


def install_redaction(*logger_names: str) -> RedactingFilter:
    """Attach the filter to the named loggers and their handlers (default: root, imsflow, httpx, prefect).

    Logger filters do not see records propagated from child loggers, handler filters do, hence both.
    Calling it again is cheap and harmless (a filter is added once), and catches handlers added since.
    """
    for name in logger_names or DEFAULT_LOGGERS:
        logger = logging.getLogger(name)
        logger.addFilter(_filter)
        for handler in logger.handlers:
            handler.addFilter(_filter)
    return _filter
