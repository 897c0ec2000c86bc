"""Working links never reach a log: the token of a verification or management link is a
capability (whoever has it can publish or unpublish), and uvicorn's access log prints every
request line (``GET /verify/<token>``). A filter on every log handler rewrites such paths to
``/verify/…`` before anything is written; the rest of the line stays for debugging."""

from __future__ import annotations

import logging
import re

_TOKEN_PATH = re.compile(r"(/(?:verify|manage)/)[A-Za-z0-9_-]{6,}")
REDACTED = "…"


def redact(text: str) -> str:
    """``text`` with the token of every ``/verify/`` and ``/manage/`` path left out."""
    return _TOKEN_PATH.sub(rf"\g<1>{REDACTED}", text)


class RedactTokens(logging.Filter):
    """Rewrites the message and its string arguments in place (uvicorn's access formatter
    reads the arguments tuple by position, so its shape is kept)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        try:
            message = record.getMessage()
        except Exception:  # a broken format string is the logging module's to report
            return True
        if _TOKEN_PATH.search(message):
            # The path is in the format, or split between it and its arguments: log the
            # message whole, redacted.
            record.msg, record.args = redact(message), ()
        return True


_FILTER = RedactTokens()
_LOGGERS = ("", "uvicorn", "uvicorn.access", "uvicorn.error", "attester")


def install() -> None:
    """Put the filter on every handler of the loggers uvicorn and Attester write to (and
    on those loggers, for handlers added later). Idempotent."""
    for name in _LOGGERS:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
        for handler in logger.handlers:
            if _FILTER not in handler.filters:
                handler.addFilter(_FILTER)
