"""Can the backend reach Label Studio with its token? One cheap authenticated call (`GET /api/current-user/whoami`),
its answer kept for a minute.

`LabelStudioStatus.current()` never waits on the network (`/health` and `/setup` call it while Label Studio waits
on them: 1 s and 3 s): it answers the last check and starts a new one in the background when that is older than
`max_age_s`. States:
- `ok`: the token is accepted;
- `auth failed`: Label Studio answered 401/403 (the detail says why; a disabled legacy token gets the hint to use a
  Personal Access Token);
- `unreachable`: no HTTP answer (wrong `LABEL_STUDIO_URL`, Label Studio down) or an unexpected status;
- `not configured`: no Label Studio address or no token is known yet (`LABEL_STUDIO_URL` / `LABEL_STUDIO_API_KEY`
  unset and no `/setup` supplied them);
- `unknown`: not checked yet (the first check runs at start-up, in the background).
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from dataclasses import asdict, dataclass, replace

import requests

from backend.core.errors import BackendError
from backend.labelstudio.client import LabelStudioConnection, failure_reason

log = logging.getLogger(__name__)
CHECK_PATH = "/api/current-user/whoami"
OK, AUTH_FAILED, UNREACHABLE, NOT_CONFIGURED, UNKNOWN = "ok", "auth failed", "unreachable", "not configured", "unknown"
FAILING = (AUTH_FAILED, UNREACHABLE)  # states in which nothing that needs Label Studio can work


@dataclass(frozen=True)
class StatusReport:
    """state: one of the module's states; detail: what Label Studio answered or why it could not be asked;
    url: Label Studio's base URL as the backend uses it; checked_at: epoch seconds of the check (0: never)."""

    state: str
    detail: str = ""
    url: str = ""
    checked_at: float = 0.0
    key: str = ""  # a fingerprint of the token checked (never the token)

    @property
    def failing(self) -> bool:
        return self.state in FAILING

    def message(self) -> str:
        """One line for an admin, e.g. "Label Studio at http://ls:8080: auth failed: HTTP 401: Invalid token. …"."""
        where = f" at {self.url}" if self.url else ""
        return f"Label Studio{where}: {self.state}" + (f": {self.detail}" if self.detail else "")

    def as_dict(self) -> dict:
        out = asdict(self)
        del out["key"]
        out["checked_s_ago"] = round(time.time() - self.checked_at, 1) if self.checked_at else None
        return out


def key_fingerprint(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:12] if key else ""


def check(connection: LabelStudioConnection, timeout_s: float = 5.0) -> StatusReport:
    """One authenticated call to Label Studio (blocking, at most about `timeout_s`)."""
    report = _check(connection, timeout_s)
    return replace(report, key=key_fingerprint(connection.api_key))


def _check(connection: LabelStudioConnection, timeout_s: float) -> StatusReport:
    url = connection.base_url
    if not url or not connection.api_key:
        missing = "LABEL_STUDIO_URL" if not url else "LABEL_STUDIO_API_KEY"
        return StatusReport(NOT_CONFIGURED, f"{missing} is not set and no /setup supplied it", url, time.time())
    try:
        response = connection.get(CHECK_PATH, timeout=timeout_s)
    except BackendError as exc:  # the personal access token could not be exchanged
        state = AUTH_FAILED if "HTTP 40" in exc.message else UNREACHABLE
        return StatusReport(state, exc.message, url, time.time())
    except requests.RequestException as exc:
        return StatusReport(UNREACHABLE, f"{exc.__class__.__name__}: {exc}"[:300], url, time.time())
    if response.status_code == 200:
        return StatusReport(OK, "", url, time.time())
    state = AUTH_FAILED if response.status_code in (401, 403) else UNREACHABLE
    return StatusReport(state, failure_reason(response), url, time.time())


class LabelStudioStatus:
    """The last `check` of one connection, refreshed in the background at most every `max_age_s` (every
    `failing_age_s` while it fails, so a fix shows within seconds)."""

    def __init__(self, connection: LabelStudioConnection, max_age_s: float = 60.0, timeout_s: float = 5.0,
                 failing_age_s: float = 5.0):
        self.connection = connection
        self.max_age_s = max_age_s
        self.failing_age_s = failing_age_s
        self.timeout_s = timeout_s
        self._report = StatusReport(UNKNOWN)
        self._lock = threading.Lock()
        self._checking = False

    def current(self) -> StatusReport:
        """The last report (never blocks); a background check starts when it is older than `max_age_s`
        (`failing_age_s` while failing) or when Label Studio's address or token changed since."""
        report = self._report
        age = self.failing_age_s if report.failing else self.max_age_s
        stale = time.time() - report.checked_at >= age or report.url != self.connection.base_url or \
            report.key != key_fingerprint(self.connection.api_key)
        if stale:
            self.refresh_in_background()
        return report

    def refresh_in_background(self) -> None:
        with self._lock:
            if self._checking:
                return
            self._checking = True
        threading.Thread(target=self.refresh, name="label-studio-check", daemon=True).start()

    def refresh(self) -> StatusReport:
        """Check now (blocking) and keep the result."""
        try:
            report = check(self.connection, self.timeout_s)
        except Exception as exc:  # noqa: BLE001 - a check must never take anything down
            report = StatusReport(UNREACHABLE, f"{exc.__class__.__name__}: {exc}"[:300], self.connection.base_url,
                                  time.time())
        finally:
            with self._lock:
                self._checking = False
        if report.state != self._report.state:
            (log.info if report.state in (OK, NOT_CONFIGURED) else log.warning)("%s", report.message())
        self._report = report
        return report
