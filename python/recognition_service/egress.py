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

from .errors import ValidationFailed


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


def _allowed(host: str, addresses, names: set[str], networks: list) -> bool:
    if host.lower() in names:
        return True
    return all(any(addr in net for net in networks) for addr in addresses)


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
    _check_host(parts, field, allowed_hosts, lambda a, _: not a.is_global or a.is_multicast,
                "a non-public address", "list it in CALLBACK_ALLOWED_HOSTS to allow it")


def _camera_refused(addr) -> bool:
    return addr.is_loopback or addr.is_link_local or addr.is_multicast or addr.is_unspecified


def check_camera_url(url: str, allowed_networks: str | None, file_root: Path | None, field: str = "url") -> str:
    """Raise RefusedAddress unless the camera may be reached; return the URL (file paths made absolute)."""
    if "://" not in url or url.startswith("file://"):
        if file_root is None:
            raise RefusedAddress(f"{field}: file cameras are disabled; set CAMERA_FILE_ROOT to allow a folder",
                                 details={"field": field})
        path = Path(os.path.realpath(url.removeprefix("file://")))
        root = Path(os.path.realpath(file_root))
        if path != root and root not in path.parents:
            raise RefusedAddress(f"{field}: file cameras must be under CAMERA_FILE_ROOT ({root})",
                                 details={"field": field})
        return str(path)
    parts = urlsplit(url)
    if not parts.hostname:
        raise RefusedAddress(f"{field}: has no host", details={"field": field})
    _check_host(parts, field, allowed_networks,
                lambda a, networks: _camera_refused(a) and not any(a in n for n in networks),
                "a refused address", "list its network in CAMERA_ALLOWED_NETWORKS to allow it")
    return url
