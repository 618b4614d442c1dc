"""One webhook POST: the host resolved and checked, then the connection made to that checked address.

Checking a name and then letting the HTTP client resolve it again would leave a window for DNS
rebinding: the name could answer a public address to the check and 127.0.0.1 or 169.254.169.254
to the connection. So the address that passed is the one connected to (urllib3's pool to the IP,
with the name as Host, as TLS SNI and as the name the certificate must carry).
"""

import ipaddress
import socket
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import urllib3
from django.conf import settings

RESPONSE_PREFIX_BYTES = 1024


class AddressRefused(Exception):
    """The URL's scheme or (resolved) address is not one deliveries may go to."""


@dataclass(frozen=True)
class Attempt:
    status_code: int | None
    latency_ms: int
    error: str
    response_body: str

    @property
    def succeeded(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def address_is_public(address: str) -> bool:
    """Globally routable unicast: not private, loopback, link-local (cloud metadata), CGNAT, ..."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
    return ip.is_global and not ip.is_multicast


def scheme_check(url: str) -> None:
    scheme = urlsplit(url).scheme.lower()
    if scheme == "https" or (scheme == "http" and settings.WEBHOOK_ALLOW_HTTP):
        return
    if scheme == "http":
        raise AddressRefused("http is not allowed (https only; WEBHOOK_ALLOW_HTTP=1 allows it)")
    raise AddressRefused(f"the scheme must be https, not {scheme or 'none'!r}")


def address_check(address: str, *, host: str) -> None:
    if settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS or address_is_public(address):
        return
    shown = host if host == address else f"{host} ({address})"
    raise AddressRefused(
        f"{shown} is not a public address (private, loopback, link-local or metadata); "
        "WEBHOOK_ALLOW_PRIVATE_NETWORKS=1 allows it"
    )


def host_resolve(host: str, port: int) -> list[str]:
    """Every address the name has now, each one checked; raises AddressRefused."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise AddressRefused(f"the host {host} does not resolve: {exc}") from exc
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    if not addresses:
        raise AddressRefused(f"the host {host} has no address")
    # All of them, not only the first: a name with one public and one private answer would
    # otherwise reach the private one whenever the order changes.
    for address in addresses:
        address_check(address, host=host)
    return addresses


def url_parts(url: str) -> tuple[str, str, int, str]:
    parts = urlsplit(url)
    host = parts.hostname or ""
    if not host:
        raise AddressRefused("the URL has no host")
    if parts.username is not None or parts.password is not None:
        raise AddressRefused("the URL must not carry a user name or password")
    try:
        port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
    except ValueError as exc:
        raise AddressRefused(f"the port is not valid: {exc}") from exc
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return parts.scheme.lower(), host, port, target


def url_check(url: str) -> None:
    """The checks of a delivery, at creation: scheme, literal address, and what the name resolves to."""
    scheme_check(url)
    _, host, port, _ = url_parts(url)
    host_resolve(host, port)


def post(*, url: str, body: bytes, headers: dict[str, str]) -> Attempt:
    """POST `body` once: no redirects followed, short timeouts, at most 1 KiB of the answer read."""
    started = time.monotonic()

    def attempt(status: int | None, error: str = "", body_prefix: bytes = b"") -> Attempt:
        return Attempt(
            status_code=status,
            latency_ms=int((time.monotonic() - started) * 1000),
            error=error[:1000],
            response_body=body_prefix.decode("utf-8", errors="replace"),
        )

    try:
        scheme_check(url)
        scheme, host, port, target = url_parts(url)
        address = host_resolve(host, port)[0]
    except AddressRefused as exc:
        return attempt(None, f"refused: {exc}")

    timeout = urllib3.Timeout(connect=settings.WEBHOOK_CONNECT_TIMEOUT, read=settings.WEBHOOK_READ_TIMEOUT)
    default_port = 443 if scheme == "https" else 80
    request_headers = {
        **headers,
        "Host": host if port == default_port else f"{host}:{port}",
        "Content-Type": "application/json",
        "User-Agent": "agent-registry-webhooks/1",
    }
    if scheme == "https":
        pool: urllib3.HTTPConnectionPool = urllib3.HTTPSConnectionPool(
            address,
            port,
            timeout=timeout,
            retries=False,
            server_hostname=host,
            assert_hostname=host,
            cert_reqs="CERT_REQUIRED",
            maxsize=1,
        )
    else:
        pool = urllib3.HTTPConnectionPool(address, port, timeout=timeout, retries=False, maxsize=1)
    try:
        response = pool.urlopen(
            "POST",
            target,
            body=body,
            headers=request_headers,
            redirect=False,
            retries=False,
            preload_content=False,
            assert_same_host=False,
        )
        try:
            prefix = response.read(RESPONSE_PREFIX_BYTES)
        finally:
            response.close()
        status = response.status
        error = (
            f"redirect to {response.headers.get('Location', '?')} not followed" if 300 <= status < 400 else ""
        )
        if not error and not 200 <= status < 300:
            error = f"HTTP {status}"
        return attempt(status, error, prefix)
    except urllib3.exceptions.HTTPError as exc:
        return attempt(None, f"{type(exc).__name__}: {exc}")
    except OSError as exc:
        return attempt(None, f"{type(exc).__name__}: {exc}")
    finally:
        pool.close()
