"""Which addresses the service may reach for clients: callback URLs and cameras (SSRF protection).

Checked when a session starts and again before every connection, on the addresses the host resolves
to at that moment. Callbacks may reach only public addresses unless the host or its network is in
CALLBACK_ALLOWED_HOSTS; cameras may reach anything but loopback, link-local (the cloud metadata
address 169.254.169.254), multicast and unspecified addresses unless allowed by
CAMERA_ALLOWED_NETWORKS; file cameras only under CAMERA_FILE_ROOT.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from pathlib import Path
from urllib.parse import urlsplit

from recognition_service.errors import ValidationFailed


class RefusedAddress(ValidationFailed):
    code = "refused_address"


def _allow_list(raw: str | None) -> tuple[set[str], list]:
    names, networks = set(), []
    for item in (raw or "").split(","):
        item = item.strip().lower()
        if not item:
            continue
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            names.add(item)
    return names, networks


def _resolve(host: str, port: int) -> list[ipaddress._BaseAddress]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise OSError(f"{host} does not resolve ({exc})") from None
    return [ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos]


_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_THIS_NETWORK = ipaddress.ip_network("0.0.0.0/8")  # "this host on this network": Linux connects it to loopback


def embedded_ipv4(addr) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (mapped, compatible, 6to4, NAT64), else None.

    The kernel connects ::ffff:127.0.0.2 and ::127.0.0.1 to 127.0.0.2 and 127.0.0.1, but Python 3.11's
    ipaddress judges them as IPv6 (not loopback), so each must be judged by the address inside it.
    """
    if addr.version != 6:
        return None
    if addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    if addr.sixtofour is not None:
        return addr.sixtofour
    if addr in _NAT64:
        return ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF)
    if int(addr) >> 32 == 0 and int(addr) > 1:  # IPv4-compatible ::a.b.c.d (not :: or ::1)
        return ipaddress.IPv4Address(int(addr))
    return None


def _effective(addr):
    """Where a connection to `addr` really goes: the IPv4 address inside it, if it carries one."""
    inner = embedded_ipv4(addr)
    return addr if inner is None else inner


def _listed(addr, networks: list) -> bool:
    """In an allow-listed network, written either way (::ffff:10.0.0.5 is in 10.0.0.0/8)."""
    return any(form in net for form in (addr, _effective(addr)) for net in networks)


def _allowed(host: str, addresses, names: set[str], networks: list) -> bool:
    if host.lower() in names:
        return True
    return all(_listed(addr, networks) for addr in addresses)


def _port(parts) -> int:
    default = {"http": 80, "https": 443, "rtsp": 554, "rtsps": 322}.get(parts.scheme.lower(), 80)
    return parts.port or default


def _check_host(parts, field: str, allow_list: str | None, refused, what: str, hint: str) -> None:
    """Resolve the URL's host now; raise RefusedAddress when it is not allow-listed and an address is refused."""
    names, networks = _allow_list(allow_list)
    try:
        addresses = _resolve(parts.hostname, _port(parts))
    except OSError as exc:
        raise RefusedAddress(f"{field}: {exc}", details={"field": field}) from None
    if _allowed(parts.hostname, addresses, names, networks):
        return
    bad = [str(a) for a in addresses if refused(a, networks)]
    if bad:
        raise RefusedAddress(f"{field}: {parts.hostname} resolves to {what} ({', '.join(bad)}); {hint}",
                             details={"field": field})


def check_callback_url(url: str, allowed_hosts: str | None, field: str = "callback_url") -> None:
    """Raise RefusedAddress (422, naming the field) unless every address of the host is public or allowed."""
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise RefusedAddress(f"{field}: must be an http:// or https:// URL with a host", details={"field": field})
    _check_host(parts, field, allowed_hosts, _callback_refused,
                "a non-public address", "list it in CALLBACK_ALLOWED_HOSTS to allow it")


def _callback_refused(addr, _networks) -> bool:
    """Anything but a public address (judged where the connection goes: ::ffff:8.8.8.8 is 8.8.8.8)."""
    target = _effective(addr)
    return not target.is_global or target.is_multicast


def _camera_refused(addr, networks) -> bool:
    """Loopback, link-local (cloud metadata), multicast and 0.0.0.0/8 or :: unless allow-listed."""
    if _listed(addr, networks):
        return False
    target = _effective(addr)
    return (target.is_loopback or target.is_link_local or target.is_multicast or target.is_unspecified
            or (target.version == 4 and target in _THIS_NETWORK))


def check_camera_url(url: str, allowed_networks: str | None, file_root: Path | None, field: str = "url") -> str:
    """Raise RefusedAddress unless the camera may be reached; return the URL (file paths made absolute)."""
    if "://" not in url or url.startswith("file://"):
        if file_root is None:
            raise RefusedAddress(f"{field}: file cameras are disabled; set CAMERA_FILE_ROOT to allow a folder",
                                 details={"field": field})
        root = Path(os.path.realpath(file_root))
        # A relative path means a file under CAMERA_FILE_ROOT, not under whatever folder the server started in.
        path = Path(os.path.realpath(root / url.removeprefix("file://")))
        if path != root and root not in path.parents:
            raise RefusedAddress(f"{field}: file cameras must be under CAMERA_FILE_ROOT ({root})",
                                 details={"field": field})
        # stat, never open: opening a FIFO or a device blocks the reader thread until a writer appears.
        if path.exists() and not path.is_file():
            raise RefusedAddress(f"{field}: {path.name} is not a regular file", details={"field": field})
        return str(path)
    parts = urlsplit(url)
    if not parts.hostname:
        raise RefusedAddress(f"{field}: has no host", details={"field": field})
    _check_host(parts, field, allowed_networks,
                _camera_refused,
                "a refused address", "list its network in CAMERA_ALLOWED_NETWORKS to allow it")
    return url
