"""Authenticated access to the Label Studio server: base URL and the Authorization header.

Two kinds of API key exist:
- the legacy token (40 hex chars), sent as ``Authorization: Token <key>``;
- a personal access token (a JWT refresh token), exchanged at ``POST /api/token/refresh/``
  for a short-lived access token sent as ``Authorization: Bearer <access>``.

Where Label Studio is (the rule, also in the README):
- `LABEL_STUDIO_URL` set: it always wins; the `hostname` Label Studio sends to `/setup` is never used.
- `LABEL_STUDIO_URL` unset: a `/setup` hostname is adopted only from an authenticated caller (basic auth on),
  because whoever names Label Studio's host receives its token with every download. Without basic auth,
  relative image URLs fail with "set LABEL_STUDIO_URL".
The token goes only to that one origin (scheme, host, port): `is_label_studio` compares the parsed URL the
HTTP client will connect to (`backend.labelstudio.urls`).
"""

from __future__ import annotations

import logging
import threading
import time

import requests

from backend.core.errors import BackendError, BadRequest, LabelStudioUnavailable
from backend.labelstudio.urls import HttpUrl, UnsafeUrl, parse_http_url

log = logging.getLogger(__name__)
ACCESS_TOKEN_TTL_S = 240  # Label Studio's access tokens live 5 minutes; refresh early.
MAX_TOKEN_LENGTH = 4096
LEGACY_DISABLED_HINT = ("Label Studio no longer accepts legacy tokens: use a Personal Access Token as "
                        "LABEL_STUDIO_API_KEY (Label Studio: Account & Settings > Personal Access Token > Create New "
                        "Token)")
AUTH_HINT = ("Check LABEL_STUDIO_API_KEY: a Personal Access Token (Label Studio: Account & Settings > Personal Access "
             "Token > Create New Token)")


def failure_reason(response: requests.Response, limit: int = 300) -> str:
    """What Label Studio answered, for an error message: "HTTP 401: <its detail>" plus, for 401/403, what to do
    (a legacy token that Label Studio no longer accepts gets the Personal Access Token hint)."""
    detail = ""
    try:
        body = response.json()
        if isinstance(body, dict):
            detail = str(body.get("detail") or body.get("error") or body.get("validation_errors") or "")
        elif body:
            detail = str(body)
    except ValueError:
        detail = response.text.strip() if "html" not in response.headers.get("content-type", "") else ""
    detail = " ".join(detail.split())[:limit].rstrip(".")
    reason = f"HTTP {response.status_code}" + (f": {detail}" if detail else "")
    if response.status_code in (401, 403):
        legacy = "legacy token" in detail.lower()
        reason += f". {LEGACY_DISABLED_HINT if legacy else AUTH_HINT}"
    return reason


def is_personal_access_token(key: str) -> bool:
    return key.count(".") == 2  # JWT: header.payload.signature


def parse_label_studio_url(raw: object, what: str) -> HttpUrl:
    """A Label Studio base URL: http(s)://host[:port][/prefix], no user info, query or fragment.
    Raises `BadRequest` naming `what` (e.g. "LABEL_STUDIO_URL", "/setup hostname")."""
    try:
        url = parse_http_url(raw)
    except UnsafeUrl as exc:
        raise BadRequest(f"{what}: {exc}") from None
    if "?" in url.target or (isinstance(raw, str) and "#" in raw):
        raise BadRequest(f"{what} must be a base URL such as http://label-studio:8080, without ?query or #fragment")
    return url


def http_session() -> requests.Session:
    """A session that ignores proxy / netrc settings of the environment: credentials are only ever the ones
    this service attaches itself, and requests go straight to the checked host."""
    session = requests.Session()
    session.trust_env = False
    return session


UNAVAILABLE = (502, 503, 504)  # Label Studio (or its proxy) is down or restarting: worth waiting for


def refused(response: requests.Response, what: str) -> BackendError:
    """The error for a Label Studio answer that is not the expected one: `LabelStudioUnavailable` for 502/503/504
    (background jobs wait and retry), `BadRequest` otherwise; the message is `what` and Label Studio's reason."""
    kind = LabelStudioUnavailable if response.status_code in UNAVAILABLE else BadRequest
    return kind(f"{what}: {failure_reason(response)}")


class LabelStudioConnection:
    """Where Label Studio is and how to authenticate. Thread-safe; `/setup` may fill in what settings leave empty
    (see the module docstring for the rule)."""

    def __init__(self, base_url: str = "", api_key: str = "", timeout_s: float = 20.0,
                 session: requests.Session | None = None):
        self._configured = parse_label_studio_url(base_url, "LABEL_STUDIO_URL") if base_url else None
        self._configured_key = api_key
        self._setup_url: HttpUrl | None = None
        self._setup_key = ""
        self._timeout_s = timeout_s
        self._session = session or http_session()
        self._lock = threading.Lock()
        self._access: tuple[str, float] | None = None

    @property
    def url(self) -> HttpUrl | None:
        return self._configured or self._setup_url

    @property
    def base_url(self) -> str:
        """Canonical base URL (e.g. "http://label-studio:8080"), or "" when unknown."""
        return self.url.base if self.url else ""

    @property
    def api_key(self) -> str:
        return self._configured_key or self._setup_key

    def is_label_studio(self, url: HttpUrl) -> bool:
        """Whether a request to `url` goes to Label Studio's own server (the only one that gets the token)."""
        return self.url is not None and url.origin == self.url.origin

    def update_from_setup(self, hostname: object, access_token: object, trusted: bool) -> None:
        """Apply `/setup`'s `hostname` and `access_token` (both optional). The hostname's form is always
        checked (`BadRequest` otherwise); it is adopted only when `trusted` and `LABEL_STUDIO_URL` is unset."""
        url = parse_label_studio_url(hostname, "/setup hostname") if hostname not in (None, "") else None
        if access_token not in (None, "") and (not isinstance(access_token, str)
                                               or len(access_token) > MAX_TOKEN_LENGTH
                                               or not access_token.isprintable()):
            raise BadRequest("/setup access_token must be a printable string")
        with self._lock:
            if url is not None and self._configured is None:
                if trusted:
                    self._setup_url = url
                elif url != self._setup_url:
                    log.warning("/setup hostname %s ignored: set LABEL_STUDIO_URL (or turn on basic auth so "
                                "/setup callers are authenticated)", url.base)
            if access_token and access_token != self._setup_key and (trusted or self._configured is not None):
                self._setup_key = access_token
                self._access = None

    def auth_headers(self) -> dict[str, str]:
        """Headers for a request to Label Studio; {} when no key is known."""
        key = self.api_key
        if not key:
            return {}
        if not is_personal_access_token(key):
            return {"Authorization": f"Token {key}"}
        with self._lock:
            access = self._access
        if access is None or access[1] < time.monotonic():  # exchanged outside the lock: /setup never waits on it
            access = (self._refresh(key), time.monotonic() + ACCESS_TOKEN_TTL_S)
            with self._lock:
                if self.api_key == key:
                    self._access = access
        return {"Authorization": f"Bearer {access[0]}"}

    def _refresh(self, refresh_token: str) -> str:
        url = self.api_url("/api/token/refresh/")
        response = self._session.post(url.url, json={"refresh": refresh_token}, timeout=self._timeout_s,
                                      allow_redirects=False)
        if response.status_code != 200:
            raise BadRequest(f"Label Studio refused the personal access token at {url.url}: "
                             f"{failure_reason(response)}")
        return response.json()["access"]

    def api_url(self, path: str) -> HttpUrl:
        """Label Studio's URL for an API path such as "/api/projects/1"; `BadRequest` when Label Studio's
        address is unknown."""
        if self.url is None:
            raise BadRequest("Label Studio's address is unknown: set LABEL_STUDIO_URL")
        try:
            return self.url.join(path)
        except UnsafeUrl as exc:
            raise BadRequest(str(exc)) from None

    def get(self, path: str, **kwargs) -> requests.Response:
        """GET an API path (e.g. "/api/projects/1") with auth; redirects are not followed."""
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs) -> requests.Response:
        """POST to an API path with auth (e.g. `json=` or `files=`); redirects are not followed."""
        return self.request("POST", path, **kwargs)

    def request(self, method: str, path: str, **kwargs) -> requests.Response:
        url = self.api_url(path)
        headers = {**self.auth_headers(), **kwargs.pop("headers", {})}
        return self._session.request(method, url.url, headers=headers, allow_redirects=False,
                                     timeout=kwargs.pop("timeout", self._timeout_s), **kwargs)
