"""A guard for URLs that users give the service (webhook targets, video sources).

`check_url` accepts http and https only, resolves the host once and refuses any
address that is not public (loopback, private, link-local, multicast, reserved,
unspecified, shared, IPv4-mapped or -translated IPv6 of those), unless
``allow_private`` (``ALLOW_PRIVATE_URLS``). `guarded_request` then connects to
exactly the checked address (the URL is rewritten to the IP, the ``Host`` header
and the TLS server name / certificate check keep the host name), so a second DNS
answer cannot point the request elsewhere (DNS rebinding). Redirects are never
followed automatically: each hop is checked like the first, at most
``max_redirects`` of them.

This module knows nothing of Flask, Celery or the database.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit, urlunsplit

import requests
from requests.adapters import HTTPAdapter

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Networks that are never public, beyond what the `ipaddress` flags say.
_EXTRA_BLOCKED = tuple(
    ipaddress.ip_network(n)
    for n in (
        "0.0.0.0/8",  # "this network"
        "100.64.0.0/10",  # carrier-grade NAT (shared address space)
        "192.0.0.0/24",  # IETF protocol assignments
        "198.18.0.0/15",  # benchmarking
        "64:ff9b:1::/48",  # local-use IPv4/IPv6 translation
        "2002::/16",  # 6to4 (embeds an IPv4 address, checked below too)
    )
)
DEFAULT_PORTS = {"http": 80, "https": 443}
REDIRECT_CODES = frozenset({301, 302, 303, 307, 308})


class UnsafeURL(ValueError):
    """A URL the service will not connect to; the message says why."""


@dataclass(frozen=True)
class CheckedURL:
    """A URL whose host resolved to ``ip``, the address to connect to."""

    url: str
    scheme: str
    host: str
    port: int
    ip: IPAddress


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for (mapped, 6to4, NAT64), if any."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in ipaddress.ip_network("64:ff9b::/96"):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    # IPv4-compatible (deprecated ::a.b.c.d)
    if int(ip) >> 32 == 0:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def blocked_reason(ip: IPAddress) -> str | None:
    """Why ``ip`` is not a public address (None when it is one)."""
    if isinstance(ip, ipaddress.IPv6Address):
        inner = _embedded_ipv4(ip)
        if inner is not None:
            reason = blocked_reason(inner)
            return f"{reason} (inside IPv6 {ip})" if reason else None
    for flag in ("unspecified", "loopback", "link_local", "multicast", "private", "reserved"):
        if getattr(ip, f"is_{flag}"):
            return f"{ip} is a {flag.replace('_', '-')} address"
    if any(ip in net for net in _EXTRA_BLOCKED if net.version == ip.version):
        return f"{ip} is not a public address"
    if not ip.is_global:
        return f"{ip} is not a public address"
    return None


def is_public_address(ip: str | IPAddress) -> bool:
    """True for an address on the public internet; False for loopback, private, link-local, ..."""
    return blocked_reason(ipaddress.ip_address(ip) if isinstance(ip, str) else ip) is None


Resolver = Callable[..., list[tuple[Any, ...]]]


def system_resolver(host: str, port: int, family: int = 0, type: int = 0) -> list[tuple[Any, ...]]:
    """The system's name lookup (the default `Resolver`); tests replace it so they never query DNS."""
    return socket.getaddrinfo(host, port, family, type)


def check_url(
    url: str,
    *,
    allow_private: bool = False,
    resolve: Resolver | None = None,
) -> CheckedURL:
    """Check ``url`` and pick the address to connect to.

    Every address the host resolves to must be allowed (a name with one private
    answer is refused), and the first one is used.

    Raises:
        UnsafeURL: not http(s), no host, unresolvable, or a non-public address.
    """
    if not isinstance(url, str) or not url or len(url) > 2048:
        raise UnsafeURL("the URL must be a string of 1 to 2048 characters")
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise UnsafeURL(f"not a valid URL: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise UnsafeURL(f"only http and https URLs are allowed, not {scheme or 'a relative URL'!r}")
    host = parts.hostname
    if not host:
        raise UnsafeURL("the URL has no host")
    if parts.username is not None or parts.password is not None:
        raise UnsafeURL("URLs with credentials (user:password@) are not allowed")
    port = port or DEFAULT_PORTS[scheme]
    try:
        infos = (resolve or system_resolver)(host, port, 0, socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError, OSError) as exc:
        raise UnsafeURL(f"the host {host!r} cannot be resolved: {exc}") from None
    addresses: list[IPAddress] = []
    for info in infos:
        raw = str(info[4][0]).split("%", 1)[0]  # drop an IPv6 zone id
        ip = ipaddress.ip_address(raw)
        if ip not in addresses:
            addresses.append(ip)
    if not addresses:
        raise UnsafeURL(f"the host {host!r} resolves to no address")
    if not allow_private:
        for ip in addresses:
            reason = blocked_reason(ip)
            if reason:
                raise UnsafeURL(f"the host {host!r} resolves to {reason}; only public addresses are allowed")
    return CheckedURL(url=urlunsplit(parts), scheme=scheme, host=host, port=port, ip=addresses[0])


class _PinnedAdapter(HTTPAdapter):
    """Sends to the IP in the URL while TLS checks the certificate for ``hostname``."""

    def __init__(self, hostname: str) -> None:
        self.hostname = hostname
        super().__init__(max_retries=0)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["server_hostname"] = self.hostname
        kwargs["assert_hostname"] = self.hostname
        super().init_poolmanager(*args, **kwargs)


def _pinned_url(checked: CheckedURL) -> str:
    parts = urlsplit(checked.url)
    ip = f"[{checked.ip}]" if checked.ip.version == 6 else str(checked.ip)
    return urlunsplit((checked.scheme, f"{ip}:{checked.port}", parts.path or "/", parts.query, ""))


def _host_header(checked: CheckedURL) -> str:
    host = f"[{checked.host}]" if ":" in checked.host else checked.host
    return host if checked.port == DEFAULT_PORTS[checked.scheme] else f"{host}:{checked.port}"


def guarded_request(
    method: str,
    url: str,
    *,
    allow_private: bool = False,
    timeout: tuple[float, float] = (5.0, 10.0),
    max_redirects: int = 0,
    headers: Mapping[str, str] | None = None,
    data: bytes | None = None,
    stream: bool = True,
    resolve: Resolver | None = None,
) -> requests.Response:
    """Send one request to ``url`` through the guard, following at most ``max_redirects``
    redirects, each target checked as the first (with 0, a redirect is returned as is). The response is streamed: read its
    body with `read_limited` (or ``iter_content``) and close it.

    Raises:
        UnsafeURL: the URL or a redirect target is refused, or too many redirects.
        requests.RequestException: the network failed or timed out.
    """
    for hop in range(max_redirects + 1):
        checked = check_url(url, allow_private=allow_private, resolve=resolve)
        session = requests.Session()
        session.trust_env = False  # no proxies from the environment: we connect ourselves
        session.mount(f"{checked.scheme}://", _PinnedAdapter(checked.host))
        request_headers = {"User-Agent": "detector", **(headers or {}), "Host": _host_header(checked)}
        try:
            response = session.request(
                method,
                _pinned_url(checked),
                headers=request_headers,
                data=data,
                timeout=timeout,
                allow_redirects=False,
                stream=stream,
            )
        finally:
            session.close()
        # With max_redirects=0 a redirect is the answer (a webhook counts it as a failure).
        redirect = response.status_code in REDIRECT_CODES and "Location" in response.headers
        if not redirect or max_redirects == 0:
            response.url = checked.url
            return response
        target = urljoin(checked.url, response.headers["Location"])
        response.close()
        if hop == max_redirects:
            raise UnsafeURL(f"too many redirects (more than {max_redirects}); last one to {target}")
        if response.status_code == 303:
            method, data = "GET", None
        url = target
    raise AssertionError("unreachable")


def read_limited(response: requests.Response, limit: int, chunk_size: int = 65536) -> bytes:
    """At most ``limit`` bytes of the response body; the rest is not read."""
    body = bytearray()
    for chunk in iter_limited(response, limit, chunk_size):
        body += chunk
    return bytes(body)


def iter_limited(response: requests.Response, limit: int, chunk_size: int = 65536) -> Iterator[bytes]:
    """The response body in chunks, stopping after ``limit`` bytes."""
    left = limit
    try:
        for chunk in response.iter_content(chunk_size):
            if left <= 0:
                break
            yield chunk[:left]
            left -= len(chunk)
    finally:
        response.close()
