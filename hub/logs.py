"""Structured logging: JSON lines for the daemon (or readable lines on a terminal)."""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog
from structlog.processors import CallsiteParameter

__all__ = ["configure_logging"]


def _drop_color_message(
    _logger: Any, _name: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    event.pop("color_message", None)  # uvicorn's duplicate of the message with ANSI codes
    return event


def configure_logging(level: str = "INFO", fmt: str = "auto") -> None:
    """Route the standard library's logging and structlog through one renderer on stderr.

    ``auto`` renders readable lines on a terminal and JSON lines otherwise (files, journald).
    """
    if fmt == "auto":
        fmt = "console" if sys.stderr.isatty() else "json"
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer(ensure_ascii=False)
        if fmt == "json" else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.stdlib.ExtraAdder(),
        _drop_color_message,
    ]
    if fmt == "json":
        # Which process and which part (each part runs in a thread named after it) logged
        # the line: with HUB_APART a daemon's lines come from several processes.
        shared.append(structlog.processors.CallsiteParameterAdder(
            [CallsiteParameter.PROCESS, CallsiteParameter.THREAD_NAME]))
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            renderer,
        ],
    ))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("amqp", "kombu", "pika", "uvicorn.access", "alembic", "weasyprint",
                  "fontTools"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
