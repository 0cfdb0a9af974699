"""One URL parser for the check and the request: what is allowed is exactly what the HTTP client connects to.

`parse_http_url` reads a URL the way `requests` does (urllib3's `parse_url`), refuses anything another parser
could read differently (backslashes, user info, control characters, whitespace, a host that `urlsplit` sees
otherwise), and returns a `HttpUrl` whose canonical `url` is the string handed to `requests`. The same
`HttpUrl.origin` decides whether Label Studio's token may go with the request.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from urllib3.exceptions import LocationParseError
from urllib3.util import parse_url

MAX_URL_LENGTH = 8192
DEFAULT_PORTS = {"http": 80, "https": 443}
_FORBIDDEN = re.compile(r"[\x00-\x20\x7f\\]")  # control characters, space, backslash
_HOST = re.compile(r"^(?:[a-z0-9_-]+(?:\.[a-z0-9_-]+)*\.?|\[[0-9a-f:.]+\])$")  # DNS name, IPv4, [IPv6]


class UnsafeUrl(ValueError):
    """A URL the service will not fetch; the message says why."""


@dataclass(frozen=True)
class HttpUrl:
    """An http(s) URL as the HTTP client will use it.

    scheme: "http" or "https"; host: lower-case ASCII (IDNA), IPv6 in brackets; port: explicit or the
    scheme's default; target: the percent-encoded path and query ("/" at least), fragment dropped.
    """

    scheme: str
    host: str
    port: int
    target: str

    @property
    def origin(self) -> tuple[str, str, int]:
        """(scheme, host, port): two URLs share an origin when the client would connect to the same server."""
        return self.scheme, self.host, self.port

    @property
    def netloc(self) -> str:
        """`host:port`, lower-case (the form `ALLOWED_IMAGE_HOSTS` entries take)."""
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        """The canonical URL string given to the HTTP client."""
        return f"{self.scheme}://{self.host}:{self.port}{self.target}"

    @property
    def base(self) -> str:
        """`scheme://host:port` plus the path without a trailing slash (for base URLs such as Label Studio's)."""
        return f"{self.scheme}://{self.host}:{self.port}{self.target.split('?', 1)[0].rstrip('/')}"

    def join(self, path: str) -> "HttpUrl":
        """This base URL with an absolute API path appended (e.g. "/api/projects/1")."""
        if not path.startswith("/"):
            raise UnsafeUrl(f"API path {path!r} must start with '/'")
        return parse_http_url(self.base + path)


def parse_http_url(raw: object) -> HttpUrl:
    """Parse an absolute http(s) URL; raise `UnsafeUrl` naming the problem."""
    if not isinstance(raw, str):
        raise UnsafeUrl(f"URL must be a string, got {type(raw).__name__}")
    url = raw.strip()
    if not url:
        raise UnsafeUrl("URL is empty")
    if len(url) > MAX_URL_LENGTH:
        raise UnsafeUrl(f"URL is longer than {MAX_URL_LENGTH} characters")
    found = _FORBIDDEN.search(url)
    if found:
        raise UnsafeUrl(f"URL {_short(url)} contains a forbidden character {found.group()!r} "
                        "(backslash, space or control character)")
    try:
        parsed = parse_url(url)
        split = urlsplit(url)
        split_port = split.port
    except (LocationParseError, ValueError) as exc:
        raise UnsafeUrl(f"URL {_short(url)} cannot be parsed: {exc}") from None
    scheme = (parsed.scheme or "").lower()
    if scheme not in DEFAULT_PORTS:
        raise UnsafeUrl(f"URL {_short(url)} must be http or https, not {scheme or 'relative'!r}")
    if parsed.auth is not None or "@" in (split.netloc or ""):
        raise UnsafeUrl(f"URL {_short(url)} carries user info ('user@host'); it is never fetched")
    host = (parsed.host or "").lower()
    if not host:
        raise UnsafeUrl(f"URL {_short(url)} has no host")
    if not _HOST.match(host):
        raise UnsafeUrl(f"URL {_short(url)} has a host with characters no server name has: {host!r}")
    port = parsed.port or DEFAULT_PORTS[scheme]
    # another parser must read the same server: urlsplit's host (IDNA-encoded) and port
    other_host = _bracketed(_idna(split.hostname or ""))
    if other_host != host or (split_port or DEFAULT_PORTS[scheme]) != port:
        raise UnsafeUrl(f"URL {_short(url)} is ambiguous: its host reads as {host!r} or {other_host!r}")
    target = (parsed.path or "/") + (f"?{parsed.query}" if parsed.query is not None else "")
    return HttpUrl(scheme, host, int(port), target)


def _idna(host: str) -> str:
    try:
        return host.encode("idna").decode("ascii").lower()
    except UnicodeError:
        return host.lower()


def _bracketed(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def _short(url: str, limit: int = 200) -> str:
    return repr(url if len(url) <= limit else url[:limit] + "…")
