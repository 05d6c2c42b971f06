"""Routing the standard library's loggers (uvicorn's) through our formatter."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from receiver.logs import UVICORN_LOGGERS, route_stdlib_logging


@pytest.fixture(name="restored", autouse=True)
def fixture_restored() -> Iterator[None]:
    """Each test changes process-wide loggers: put them back as they were."""
    loggers = [logging.getLogger(), *(logging.getLogger(n) for n in UVICORN_LOGGERS)]
    saved = [(lg, list(lg.handlers), lg.propagate, lg.level) for lg in loggers]
    yield
    for logger, handlers, propagate, level in saved:
        logger.handlers[:] = handlers
        logger.propagate = propagate
        logger.setLevel(level)


def test_an_access_log_uvicorn_switched_off_stays_off() -> None:
    """``serve`` runs uvicorn with ``access_log=False`` (the receiver logs each delivery
    itself); routing uvicorn's loggers must not turn the access lines back on."""
    access = logging.getLogger("uvicorn.access")
    access.handlers.clear()  # what uvicorn does for access_log=False
    access.propagate = False

    route_stdlib_logging("json", "info")

    assert not access.hasHandlers()


def test_an_access_log_uvicorn_kept_is_routed_through_our_handler() -> None:
    """With uvicorn's access log on (its own handler), the lines go through ours instead."""
    access = logging.getLogger("uvicorn.access")
    access.handlers[:] = [logging.StreamHandler()]
    access.propagate = False

    route_stdlib_logging("json", "info")

    assert access.handlers == []
    assert access.propagate
    assert [h.get_name() for h in logging.getLogger().handlers if h.get_name()] == ["nova-sink"]
