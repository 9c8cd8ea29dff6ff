"""Everything the service sends to or reads from a URL a client gave: checked, bounded, pinned.

A client-supplied URL (an input to download, an output to PUT to, a webhook) must not become a way
into the server's own network (SSRF). Every request made here:

- uses a scheme the service supports: ``http`` and ``https``; ``s3`` only when the operator allows
  it (``--allow-s3``: the object is then read or written with the *server's* credentials, so any
  client could reach any bucket those credentials reach);
- resolves the host once, refuses it unless every address it resolves to is allowed (global
  unicast; loopback, private, link-local (which holds the cloud metadata address 169.254.169.254),
  CGNAT, multicast, reserved and unspecified ranges are refused unless ``--allow-private-urls``
  or ``--allow-network CIDR`` say otherwise; an IPv4-mapped IPv6 address is judged as the IPv4
  one), and then **connects to the address it checked** (the URL is rewritten to the IP with the
  ``Host`` header and, for TLS, the SNI name and certificate check kept on the hostname), so a DNS
  answer that changes between the check and the connection (DNS rebinding) cannot move it;
- follows redirects itself, at most :data:`MAX_REDIRECTS`, checking every hop the same way;
- has a size limit (larger bodies are cut off: 413) and a time limit for the whole exchange;
- ignores proxy variables of the environment (a proxy would connect on its behalf, unchecked).

Messages name URLs without their query (a presigned URL's query is a credential).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import socket
import ssl
import urllib.parse
from collections.abc import AsyncIterator
from typing import Any

import httpx

__all__ = ["FetchError", "NetGuard", "redact", "MAX_REDIRECTS"]

#: Redirects followed at most (each hop checked).
MAX_REDIRECTS = 5
#: Bytes read or sent per chunk.
CHUNK = 1 << 20
_REDIRECTS = (301, 302, 303, 307, 308)


class FetchError(Exception):
    """A URL refused or an exchange that failed; ``status`` is the HTTP status to answer with
    (400 refused or unusable URL, 413 too large, 502 the remote server failed, 504 too slow)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def redact(url: str) -> str:
    """``url`` without user info and query (both may be credentials)."""
    try:
        p = urllib.parse.urlsplit(url)
        host = p.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        netloc = host + (f":{p.port}" if p.port else "")
    except ValueError:
        return "(malformed URL)"
    return urllib.parse.urlunsplit((p.scheme, netloc, p.path, "…" if p.query else "", ""))


def _ip(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    ip = ipaddress.ip_address(value.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


class NetGuard:
    """The checks above, with the operator's allowances.

    Parameters
    ----------
    allow_private : bool
        Any address but unspecified and multicast is allowed (tests, trusted networks).
    allowed_networks : sequence of str
        CIDR networks allowed in any case.
    allow_s3 : bool
        ``s3://`` URLs are accepted (through s3fs, with the server's credentials).
    max_bytes : int
        Largest body downloaded, bytes.
    timeout_s : float
        Longest download (all hops), seconds.
    hosts_only : bool
        Resolve names from the hosts file only, never through DNS (air-gapped hosts, tests).
    """

    def __init__(self, *, allow_private: bool, allowed_networks: tuple[str, ...] = (), allow_s3: bool = False,
                 max_bytes: int, timeout_s: float, hosts_only: bool = False,
                 hosts_file: str = "/etc/hosts") -> None:
        self.hosts_only = hosts_only
        self.hosts_file = hosts_file
        self.allow_private = allow_private
        self.allowed_networks = tuple(ipaddress.ip_network(n, strict=False) for n in allowed_networks)
        self.allow_s3 = allow_s3
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s
        self._ssl = ssl.create_default_context()
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=16)
        self._plain = httpx.AsyncClient(follow_redirects=False, trust_env=False, limits=limits,
                                        timeout=httpx.Timeout(30.0, connect=10.0))

    async def aclose(self) -> None:
        await self._plain.aclose()

    # checks -------------------------------------------------------------------------------------

    def ip_allowed(self, address: str) -> bool:
        """Whether the service may connect to ``address`` (an IP literal)."""
        try:
            ip = _ip(address)
        except ValueError:
            return False
        if any(ip.version == net.version and ip in net for net in self.allowed_networks):
            return True
        if ip.is_unspecified or ip.is_multicast:
            return False
        if self.allow_private:
            return True
        return ip.is_global and not ip.is_reserved and not ip.is_link_local and not ip.is_loopback

    def check_url(self, url: Any, what: str, *, s3: bool = True) -> urllib.parse.SplitResult:
        """Parse ``url`` and check its form (not yet its address).

        Raises
        ------
        FetchError
            400, naming ``what`` (the request field) and the problem.
        """
        if not isinstance(url, str) or not url.strip():
            raise FetchError(400, f"{what}: a URL is required")
        try:
            parts = urllib.parse.urlsplit(url.strip())
            port = parts.port
        except ValueError:
            raise FetchError(400, f"{what}: malformed URL") from None
        scheme = parts.scheme.lower()
        schemes = ("http", "https", "s3") if (self.allow_s3 and s3) else ("http", "https")
        if scheme not in schemes:
            extra = "" if self.allow_s3 or scheme != "s3" else " (s3:// only when the server runs with --allow-s3)"
            raise FetchError(400, f"{what}: scheme {scheme + '://' if scheme else '(none)'} is not supported; "
                                  f"use {', '.join(s + '://' for s in schemes)}{extra}")
        if not parts.hostname:
            raise FetchError(400, f"{what}: the URL has no host")
        if scheme != "s3" and (parts.username is not None or parts.password is not None):
            raise FetchError(400, f"{what}: credentials in the URL are not supported")
        if port == 0:
            raise FetchError(400, f"{what}: port 0")
        return parts

    async def resolve(self, host: str, port: int, shown: str) -> str:
        """One address of ``host`` that may be connected to (every address it has is checked)."""
        try:
            return str(self._checked([str(_ip(host))], host, shown))
        except ValueError:
            pass
        if self.hosts_only:
            return self._checked(self._hosts_lookup(host), host, shown)
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError, OSError) as exc:
            raise FetchError(400, f"{shown}: cannot resolve {host}: {getattr(exc, 'strerror', None) or exc}") from None
        return self._checked([str(info[4][0]) for info in infos], host, shown)  # an IPv4/IPv6 sockaddr: host first

    def _hosts_lookup(self, host: str) -> list[str]:
        """Addresses of ``host`` in the hosts file (no DNS)."""
        name = host.lower().rstrip(".")
        found: list[str] = []
        try:
            with open(self.hosts_file, encoding="utf-8", errors="replace") as f:
                for line in f:
                    fields = line.split("#", 1)[0].split()
                    if len(fields) >= 2 and name in (n.lower() for n in fields[1:]):
                        found.append(fields[0])
        except OSError:
            pass
        return found

    def _checked(self, addresses: list[str], host: str, shown: str) -> str:
        if not addresses:
            raise FetchError(400, f"{shown}: {host} has no address")
        bad = [a for a in addresses if not self.ip_allowed(a)]
        if bad:
            raise FetchError(400, f"{shown}: {host} resolves to {bad[0]}, a loopback, private, link-local or "
                                  "otherwise non-public address, which this server does not connect to "
                                  "(see --allow-private-urls / --allow-network)")
        return addresses[0]

    @contextlib.asynccontextmanager
    async def _request(self, method: str, url: str, *, content: Any = None,
                       headers: dict[str, str] | None = None, timeout: float | None = None
                       ) -> AsyncIterator[httpx.Response]:
        """Send one request to the checked, pinned address of ``url``; yields the streaming response."""
        parts = self.check_url(url, redact(url), s3=False)
        shown = redact(url)
        scheme = parts.scheme.lower()
        host = parts.hostname or ""
        port = parts.port or (443 if scheme == "https" else 80)
        address = await self.resolve(host, port, shown)
        literal = f"[{address}]" if ":" in address else address
        pinned = urllib.parse.urlunsplit((scheme, f"{literal}:{port}", parts.path or "/", parts.query, ""))
        host_header = (f"[{host}]" if ":" in host else host) + (f":{parts.port}" if parts.port else "")
        all_headers = {"Host": host_header, "User-Agent": "audioqc-service", **(headers or {})}
        extensions: dict[str, Any] = {}
        timeout_cfg = httpx.Timeout(timeout or 30.0, connect=min(10.0, timeout or 10.0))
        if scheme == "https":
            extensions["sni_hostname"] = host
            client = httpx.AsyncClient(verify=self._ssl, follow_redirects=False, trust_env=False)
        else:
            client = self._plain
        try:
            request = client.build_request(method, pinned, headers=all_headers, content=content,
                                           extensions=extensions, timeout=timeout_cfg)
            try:
                response = await client.send(request, stream=True)
            except httpx.TimeoutException:
                raise FetchError(504, f"{shown}: timed out") from None
            except httpx.HTTPError as exc:
                raise FetchError(502, f"{shown}: {type(exc).__name__}: {exc}") from None
            try:
                yield response
            finally:
                await response.aclose()
        finally:
            if client is not self._plain:
                await client.aclose()

    # operations ---------------------------------------------------------------------------------

    async def download(self, url: str, dest: str) -> int:
        """Download ``url`` (http(s) or, when allowed, s3) to the local file ``dest``; returns bytes.

        Raises
        ------
        FetchError
            Refused (400), too large (413), failed (400 for a 4xx answer, 502 otherwise), too
            slow (504). ``dest`` is removed on failure.
        """
        parts = self.check_url(url, "input URL")
        try:
            async with asyncio.timeout(self.timeout_s):
                if parts.scheme.lower() == "s3":
                    return await asyncio.to_thread(self._download_s3, url, dest)
                return await self._download_http(url, dest)
        except TimeoutError:
            with contextlib.suppress(OSError):
                os.unlink(dest)
            raise FetchError(504, f"{redact(url)}: download not finished within {self.timeout_s:g} s") from None
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(dest)
            raise

    async def _download_http(self, url: str, dest: str) -> int:
        current = url
        for _ in range(MAX_REDIRECTS + 1):
            shown = redact(current)
            async with self._request("GET", current, timeout=self.timeout_s) as response:
                if response.status_code in _REDIRECTS:
                    location = response.headers.get("location")
                    if not location:
                        raise FetchError(502, f"{shown}: redirect without a Location")
                    current = urllib.parse.urljoin(current, location)
                    continue
                if not 200 <= response.status_code < 300:
                    status = 400 if 400 <= response.status_code < 500 else 502
                    raise FetchError(status, f"{shown}: HTTP {response.status_code} {response.reason_phrase}")
                declared = response.headers.get("content-length")
                if declared and declared.isdigit() and int(declared) > self.max_bytes:
                    raise FetchError(413, f"{shown}: {int(declared)} bytes, over this server's limit of "
                                          f"{self.max_bytes} bytes")
                size = 0
                with open(dest, "wb") as f:
                    async for chunk in response.aiter_raw(CHUNK):
                        size += len(chunk)
                        if size > self.max_bytes:
                            raise FetchError(413, f"{shown}: over this server's limit of {self.max_bytes} bytes")
                        f.write(chunk)
                return size
        raise FetchError(400, f"{redact(url)}: more than {MAX_REDIRECTS} redirects")

    def _download_s3(self, url: str, dest: str) -> int:
        import fsspec

        try:
            fs, path = fsspec.core.url_to_fs(url)
            size = fs.info(path).get("size") or 0
            if size > self.max_bytes:
                raise FetchError(413, f"{url}: {size} bytes, over this server's limit of {self.max_bytes} bytes")
            copied = 0
            with fs.open(path, "rb") as src, open(dest, "wb") as dst:
                while chunk := src.read(CHUNK):
                    copied += len(chunk)
                    if copied > self.max_bytes:
                        raise FetchError(413, f"{url}: over this server's limit of {self.max_bytes} bytes")
                    dst.write(chunk)
            return copied
        except FetchError:
            raise
        except FileNotFoundError:
            raise FetchError(400, f"{url}: no such object") from None
        except Exception as exc:  # credential and network errors differ per backend
            raise FetchError(502, f"{url}: cannot read: {type(exc).__name__}") from None

    async def publish(self, url: str, path: str) -> None:
        """Send the local file ``path`` to ``url``: one HTTP PUT with its length (a presigned URL),
        or an s3fs upload when ``s3://`` is allowed.

        Raises
        ------
        FetchError
            Refused (400), or the PUT failed (502, with the remote status).
        """
        parts = self.check_url(url, "output URL")
        if parts.scheme.lower() == "s3":
            await asyncio.to_thread(self._publish_s3, url, path)
            return
        size = os.path.getsize(path)

        async def body() -> AsyncIterator[bytes]:
            with open(path, "rb") as f:
                while chunk := f.read(CHUNK):
                    yield chunk

        shown = redact(url)
        async with self._request("PUT", url, content=body() if size else b"",
                                 headers={"Content-Length": str(size)}, timeout=self.timeout_s) as response:
            if not 200 <= response.status_code < 300:
                raise FetchError(502, f"{shown}: PUT refused: HTTP {response.status_code} {response.reason_phrase}")

    def _publish_s3(self, url: str, path: str) -> None:
        import fsspec

        try:
            fs, key = fsspec.core.url_to_fs(url)
            fs.put_file(path, key)
        except Exception as exc:  # credential and network errors differ per backend
            raise FetchError(502, f"{url}: cannot write: {type(exc).__name__}") from None

    async def post_json(self, url: str, body: bytes, *, timeout_s: float) -> int:
        """POST ``body`` (JSON) to ``url``; returns the HTTP status (redirects are not followed)."""
        async with asyncio.timeout(timeout_s):
            async with self._request("POST", url, content=body, headers={"Content-Type": "application/json"},
                                     timeout=timeout_s) as response:
                await response.aread()
                return response.status_code
