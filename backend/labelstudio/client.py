"""Authenticated access to the Label Studio server: base URL and the Authorization header.

Two kinds of API key exist:
- the legacy token (40 hex chars), sent as ``Authorization: Token <key>``;
- a personal access token (a JWT refresh token), exchanged at ``POST /api/token/refresh/``
  for a short-lived access token sent as ``Authorization: Bearer <access>``.
"""

from __future__ import annotations

import threading
import time
from urllib.parse import urlsplit

import requests

from backend.core.errors import BadRequest

ACCESS_TOKEN_TTL_S = 240  # Label Studio's access tokens live 5 minutes; refresh early.


def is_personal_access_token(key: str) -> bool:
    return key.count(".") == 2  # JWT: header.payload.signature


class LabelStudioConnection:
    """Where Label Studio is and how to authenticate. Thread-safe; updatable from `/setup`.

    `LABEL_STUDIO_URL` / `LABEL_STUDIO_API_KEY` win; the `hostname` and `access_token`
    Label Studio sends to `/setup` fill in only what the settings leave empty.
    """

    def __init__(self, base_url: str = "", api_key: str = "", timeout_s: float = 20.0,
                 session: requests.Session | None = None):
        self._configured_url = base_url.rstrip("/")
        self._configured_key = api_key
        self._setup_url = ""
        self._setup_key = ""
        self._timeout_s = timeout_s
        self._session = session or requests.Session()
        self._lock = threading.Lock()
        self._access: tuple[str, float] | None = None

    @property
    def base_url(self) -> str:
        return self._configured_url or self._setup_url

    @property
    def api_key(self) -> str:
        return self._configured_key or self._setup_key

    @property
    def netloc(self) -> str:
        """`host:port` of Label Studio, lower-case, or "" when unknown."""
        return _netloc(self.base_url) if self.base_url else ""

    def update_from_setup(self, hostname: str | None, access_token: str | None) -> None:
        with self._lock:
            if hostname:
                self._setup_url = str(hostname).rstrip("/")
            if access_token and access_token != self._setup_key:
                self._setup_key = str(access_token)
                self._access = None

    def auth_headers(self) -> dict[str, str]:
        """Headers for a request to Label Studio; {} when no key is known."""
        key = self.api_key
        if not key:
            return {}
        if not is_personal_access_token(key):
            return {"Authorization": f"Token {key}"}
        with self._lock:
            if self._access is None or self._access[1] < time.monotonic():
                self._access = (self._refresh(key), time.monotonic() + ACCESS_TOKEN_TTL_S)
            return {"Authorization": f"Bearer {self._access[0]}"}

    def _refresh(self, refresh_token: str) -> str:
        url = f"{self.base_url}/api/token/refresh/"
        response = self._session.post(url, json={"refresh": refresh_token}, timeout=self._timeout_s)
        if response.status_code != 200:
            raise BadRequest(f"Label Studio refused the personal access token (HTTP {response.status_code} "
                             f"from {url}); check LABEL_STUDIO_API_KEY")
        return response.json()["access"]

    def get(self, path: str, **kwargs) -> requests.Response:
        """GET an API path (e.g. "/api/projects/1") with auth."""
        headers = {**self.auth_headers(), **kwargs.pop("headers", {})}
        return self._session.get(f"{self.base_url}{path}", headers=headers,
                                 timeout=kwargs.pop("timeout", self._timeout_s), **kwargs)


def _netloc(url: str) -> str:
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"{(parts.hostname or '').lower()}:{port}"
