"""A local psreal run listens on loopback only: the rendezvous store and the control server (which
exchange pickled objects and the run's messages) must not be reachable from other machines.

The kernel's table of listening sockets (/proc/net/tcp, /proc/net/tcp6) says where each listens.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from psreal.control import ControlServer
from psreal.launch import local_rendezvous

LISTEN = "0A"
LOOPBACK = {"0100007F", "00000000000000000000000001000000"}  # 127.0.0.1, ::1 (kernel byte order)


def listening_addresses(port: int) -> set[str]:
    """The local addresses (as the kernel writes them, hex) of the sockets listening on `port`."""
    out = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for row in Path(table).read_text().splitlines()[1:]:
            fields = row.split()
            addr, hex_port = fields[1].split(":")
            if fields[3] == LISTEN and int(hex_port, 16) == port:
                out.add(addr)
    return out


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="needs Linux's /proc/net/tcp")
def test_the_rendezvous_store_listens_on_loopback_only() -> None:
    store, init_method = local_rendezvous("127.0.0.1", 1, 5.0)
    port = int(init_method.rsplit(":", 1)[1])
    assert init_method == f"tcp://127.0.0.1:{port}"
    found = listening_addresses(port)
    assert found and found <= LOOPBACK, found
    store.set("k", "v")  # the store works through the handed-over socket
    assert store.get("k") == b"v"


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="needs Linux's /proc/net/tcp")
def test_the_control_server_listens_on_loopback_only() -> None:
    srv = ControlServer(None)
    try:
        found = listening_addresses(srv.addr[1])
        assert found and found <= LOOPBACK, found
    finally:
        srv.sock.close()
