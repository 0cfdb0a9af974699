"""Background jobs ride out a Label Studio outage (restart, redeploy, network blip) instead of failing on it.

A call to Label Studio that finds it unreachable (connection refused, timeout) or unavailable (502, 503, 504) waits
for it with backoff (1, 2, 4 … 30 s between checks, each check one authenticated call) and is tried again; after
`LABEL_STUDIO_OUTAGE_S` (300 s) of outage the job stops with `LabelStudioUnavailable` naming how long it waited.
What a predict job stored before stays stored, and the next predict job (the next `/setup` retries a failed one
after 5 minutes; new tasks and new versions start one) predicts only what is left.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Callable, TypeVar

import requests

from backend.core.errors import LabelStudioUnavailable
from backend.labelstudio.status import OK, UNREACHABLE

if TYPE_CHECKING:  # annotations only: the context module imports this one
    from backend.jobs.context import JobContext

log = logging.getLogger(__name__)
T = TypeVar("T")
FIRST_WAIT_S, MAX_WAIT_S = 1.0, 30.0


def is_outage(exc: BaseException) -> bool:
    """Whether `exc` says Label Studio is down rather than that it refused something."""
    return isinstance(exc, (LabelStudioUnavailable, requests.ConnectionError, requests.Timeout))


def wait_for_label_studio(context: JobContext, stop, limit_s: float, started: float | None = None) -> None:
    """Block until Label Studio answers an authenticated call again; `LabelStudioUnavailable` once `limit_s`
    seconds have passed since `started` (default: now), or at once when it answers but refuses the token. Checks
    `stop` between waits (a cancel or shutdown ends the wait)."""
    started = time.monotonic() if started is None else started
    wait = FIRST_WAIT_S
    while True:
        stop.check()
        report = context.label_studio.refresh()  # the shared status: /health and /setup see it too
        if report.state == OK:
            log.info("Label Studio is back after %.0f s", time.monotonic() - started)
            return
        if report.state != UNREACHABLE:  # refused token, no address: waiting will not fix it
            raise LabelStudioUnavailable(report.message())
        waited = time.monotonic() - started
        if waited >= limit_s:
            raise LabelStudioUnavailable(f"Label Studio was unreachable for {waited:.0f} s (LABEL_STUDIO_OUTAGE_S="
                                         f"{limit_s:g}): {report.message()}; what was stored stays, the next predict "
                                         "job does the rest")
        log.warning("Label Studio unreachable (%s); checking again in %.0f s", report.state, wait)
        stop.wait(min(wait, max(0.0, limit_s - waited)))
        wait = min(wait * 2, MAX_WAIT_S)


def riding_out(context: JobContext, stop, call: Callable[[], T], what: str) -> T:
    """`call()`, waited for and tried again while Label Studio is down (at most `LABEL_STUDIO_OUTAGE_S` in all)."""
    started = None
    while True:
        try:
            return call()
        except Exception as exc:  # noqa: BLE001 - only outages are retried; everything else propagates
            if not is_outage(exc):
                raise
            started = time.monotonic() if started is None else started
            log.warning("%s: Label Studio unavailable (%s); waiting for it", what, exc)
            wait_for_label_studio(context, stop, context.settings.label_studio_outage_s, started)
