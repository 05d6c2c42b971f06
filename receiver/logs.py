"""structlog setup: JSON lines when not on a TTY, readable console output on one.

Standard-library loggers (uvicorn's "Invalid HTTP request received.", its tracebacks, the
access log, anything a library logs) go through the same renderer, so that under
``LOG_FORMAT=json`` every line on stderr is one JSON object: a log shipper never sees a
plain-text line, nor a traceback spread over fifty lines.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, Literal

import structlog

Format = Literal["console", "json"]

# uvicorn installs its own handlers on these (its LOGGING_CONFIG); they are taken over.
UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi")
_HANDLER_NAME = "nova-sink"


def _renderer(fmt: Format) -> structlog.typing.Processor:
    if fmt == "json":
        return structlog.processors.JSONRenderer()
    return structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())


def stdlib_formatter(fmt: Format = "json") -> logging.Formatter:
    """A ``logging.Formatter`` rendering standard-library records like structlog's own
    (usable from a ``dictConfig`` as ``{"()": "receiver.logs.stdlib_formatter"}``)."""
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[
            structlog.stdlib.add_log_level,
            structlog.stdlib.add_logger_name,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
        ],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            # A traceback becomes one escaped "exception" field of the same JSON line.
            structlog.processors.format_exc_info,
            _renderer(fmt),
        ],
    )


class _Stderr(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is when a record arrives (a redirected or captured
    stream included), never to a stream object that was closed since configuration."""

    def __init__(self) -> None:
        super().__init__()

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass  # StreamHandler.__init__ assigns it; the property always answers sys.stderr


def _level(level: str) -> int:
    return logging.getLevelNamesMapping()[level.upper()]


def route_stdlib_logging(fmt: Format, level: str = "info") -> None:
    """Send every standard-library record to stderr through ``stdlib_formatter``.

    The root logger gets one handler of ours (replacing an earlier one of ours, and nothing
    else: a test harness's capture handler stays); uvicorn's loggers lose their own handlers
    and propagate to it. Other libraries stay at WARNING, so that httpx does not log every
    request of a reconcile run.
    """
    handler = _Stderr()
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(stdlib_formatter(fmt))
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(max(_level(level), logging.WARNING))
    for name in UVICORN_LOGGERS:
        logger = logging.getLogger(name)
        if _switched_off(logger):
            continue  # see _switched_off
        logger.handlers.clear()
        logger.propagate = True
        logger.setLevel(_level(level))


def _switched_off(logger: logging.Logger) -> bool:
    """Whether uvicorn switched this logger off (no handlers, no propagation: what it does
    to its access logger for ``access_log=False`` / ``--no-access-log``, before it builds
    the app). Routing it to the root handler would turn it back on: ``serve`` asks for no
    access lines (the receiver logs each delivery itself), and one more line per request
    cost ~20 % of the deliveries per second at ``LOG_LEVEL=info``."""
    return not logger.handlers and not logger.propagate


def uvicorn_log_config(fmt: Format, level: str = "info") -> dict[str, Any]:
    """uvicorn's ``log_config`` for ``serve``: the supervisor process of ``--workers`` logs
    before any app exists, so its lines need the same formatter from the start."""
    upper = level.upper()
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"nova_sink": {"()": "receiver.logs.stdlib_formatter", "fmt": fmt}},
        "handlers": {
            "nova_sink": {
                "class": "logging.StreamHandler",
                "formatter": "nova_sink",
                "stream": "ext://sys.stderr",
            }
        },
        "loggers": {
            "uvicorn": {"handlers": ["nova_sink"], "level": upper, "propagate": False},
            "uvicorn.error": {"level": upper},
            "uvicorn.access": {"handlers": ["nova_sink"], "level": upper, "propagate": False},
        },
    }


def configure_logging(fmt: Format, level: str = "info") -> None:
    """Configure structlog and the standard-library loggers once per process (a
    composition root calls this)."""
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            _renderer(fmt),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_level(level)),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )
    route_stdlib_logging(fmt, level)
