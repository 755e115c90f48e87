"""How the node logs: ``--verbosity`` and ``--log-format text|json``.

Every line goes to stderr. The text format is ``2026-01-01T00:00:00.000Z INFO  logger: message``;
the JSON format is one object per line with the same facts as keys (``time``, ``level``,
``logger``, ``message``) plus the structured fields a line carries: a call like
``log.info("imported block ...", extra={"fields": {"number": 12, ...}})`` puts ``number``
and the rest at the top level of its JSON object, so a log shipper needs no regex to read
a block's number or verification time.

Verbosity follows geth's scale (0 silent, 1 error, 2 warn, 3 info, 4 debug, 5 trace);
names are accepted too (``error``, ``warning``, ``info``, ``debug``, ``trace``).
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from typing import Any, Optional

VERBOSITY_LEVELS: dict[int, int] = {
    0: logging.CRITICAL + 10,  # silent: above every level we emit
    1: logging.ERROR,
    2: logging.WARNING,
    3: logging.INFO,
    4: logging.DEBUG,
    5: 5,  # trace: below DEBUG, for the few very chatty loggers
}
VERBOSITY_NAMES: dict[str, int] = {
    "silent": 0, "error": 1, "warn": 2, "warning": 2, "info": 3, "debug": 4, "trace": 5, "detail": 5,
}
DEFAULT_VERBOSITY = 3
LOG_FORMATS = ("text", "json")

#: ``LogRecord`` attributes that are not a line's own structured fields.
FIELDS_ATTR = "fields"


def parse_verbosity(text: str) -> int:
    """``--verbosity``: 0..5 or a level name; the logging level it means."""
    raw = text.strip().lower()
    if raw in VERBOSITY_NAMES:
        return VERBOSITY_LEVELS[VERBOSITY_NAMES[raw]]
    try:
        number = int(raw)
    except ValueError:
        number = -1
    if number not in VERBOSITY_LEVELS:
        raise argparse.ArgumentTypeError(
            f"expected a verbosity 0..5 (0 silent, 1 error, 2 warn, 3 info, 4 debug, 5 trace) or a level name, got {text!r}"
        )
    return VERBOSITY_LEVELS[number]


def _utc(created: float, msecs: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created)) + f".{int(msecs):03d}Z"


class TextFormatter(logging.Formatter):
    """ISO 8601 UTC timestamps with milliseconds: 2026-01-01T00:00:00.000Z."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-5s %(name)s: %(message)s")

    def formatTime(self, record: logging.LogRecord, datefmt: Optional[str] = None) -> str:
        return _utc(record.created, record.msecs)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the record's ``fields``
    and, for an exception, its traceback as ``exception`` (one string)."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "time": _utc(record.created, record.msecs),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, FIELDS_ATTR, None)
        if isinstance(fields, dict):
            for key, value in fields.items():
                if key not in doc:
                    doc[key] = value
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str, separators=(",", ":"))


def setup_logging(level: int = logging.INFO, fmt: str = "text") -> None:
    """Send every logger's lines to stderr at ``level`` in ``fmt`` (``text`` or ``json``)."""
    if fmt not in LOG_FORMATS:
        raise ValueError(f"log format must be one of {', '.join(LOG_FORMATS)}, got {fmt!r}")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    if level > logging.CRITICAL:
        logging.disable(logging.CRITICAL)
    else:
        logging.disable(logging.NOTSET)


def add_logging_arguments(parser: argparse.ArgumentParser) -> None:
    """``--verbosity`` and ``--log-format`` on a command's parser."""
    group = parser.add_argument_group("logging")
    group.add_argument(
        "--verbosity", type=parse_verbosity, default=VERBOSITY_LEVELS[DEFAULT_VERBOSITY], metavar="N",
        help="log level: 0 silent, 1 error, 2 warn, 3 info (default), 4 debug, 5 trace; or a level name",
    )
    group.add_argument(
        "--log-format", choices=LOG_FORMATS, default="text",
        help="text (default) or json: one JSON object per line, with each line's fields as keys",
    )
