"""Which process on this host serves an endpoint (for ``resil drill kill``).

An endpoint is local when its host resolves only to addresses of this host; the process
is the one holding the LISTEN socket of its port, found through ``/proc/net/tcp{,6}``
(the socket's inode) and ``/proc/*/fd``. Nothing here connects anywhere.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import sys
from pathlib import Path

from .probe import DrillInputError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def local_addresses(host: str) -> list[IPAddress]:
    """The addresses ``host`` names, when every one is an address of this host.

    Raises :class:`DrillInputError` otherwise. Nothing is sent to the endpoint: an
    address is this host's when a socket can be bound to it.
    """
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except socket.gaierror as exc:
        raise DrillInputError(f"{host} does not resolve: {exc}") from exc
    addresses = sorted({ipaddress.ip_address(str(i[4][0]).split("%")[0]) for i in infos},
                       key=str)
    foreign = [a for a in addresses if not _of_this_host(a)]
    if foreign:
        raise DrillInputError(f"{', '.join(map(str, foreign))} is not an address of this "
                              "host")
    return addresses


def _of_this_host(address: IPAddress) -> bool:
    if address.is_loopback:
        return True
    family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((str(address), 0))    # EADDRNOTAVAIL: not an address of ours
        except OSError:
            return False
    return True


def listening_pids(port: int, addresses: list[IPAddress]) -> tuple[set[int], list[int]]:
    """The inodes of the TCP sockets listening on ``port`` at one of ``addresses`` (or
    any address), and the processes holding them (those this user may inspect)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 10 or fields[3] != "0A":           # 0A: LISTEN
                continue
            hex_address, hex_port = fields[1].split(":")
            if int(hex_port, 16) != port:
                continue
            address = _proc_address(hex_address)
            mapped = getattr(address, "ipv4_mapped", None)
            if address.is_unspecified or address in addresses or mapped in addresses:
                inodes.add(int(fields[9]))
    wanted = {f"socket:[{inode}]" for inode in inodes}
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            links = [os.readlink(fd) for fd in (proc / "fd").iterdir()]
        except OSError:     # gone, or not ours to inspect
            continue
        if wanted.intersection(links):
            pids.append(int(proc.name))
    return inodes, sorted(pids)


def _proc_address(hex_address: str) -> IPAddress:
    """An address as /proc/net/tcp{,6} prints it: 32-bit words in host byte order."""
    raw = bytes.fromhex(hex_address)
    if sys.byteorder == "little":
        raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    return ipaddress.ip_address(raw)


def command_of(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "?"


