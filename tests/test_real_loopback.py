"""A local psreal run listens on loopback only: the rendezvous store and the control server (which
exchange pickled objects and the run's messages) must not be reachable from other machines.

The kernel's table of listening sockets (/proc/net/tcp, /proc/net/tcp6) says where each listens.
And a process that reaches the rendezvous without the run's token is refused by every rank before
any pickled object crosses the group (`psreal.launch.prove_membership`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

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


def _member(rank: int, init_method: str, token: bytes, q: Any) -> None:
    """One rank of a 2-process group: proves it has `token` and says what came of it."""
    import torch.distributed as dist

    from psreal.launch import prove_membership

    dist.init_process_group("gloo", init_method=init_method, rank=rank, world_size=2)
    try:
        prove_membership(token, rank, 2)
        q.put((rank, "accepted"))
    except RuntimeError as exc:
        q.put((rank, str(exc)))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
@pytest.mark.timeout(120)
@pytest.mark.parametrize("intruder", [False, True])
def test_a_process_without_the_run_token_is_refused_before_any_data_is_read(
    intruder: bool,
) -> None:
    import multiprocessing as mp
    import socket

    token = b"the run's token"
    with socket.create_server(("127.0.0.1", 0)) as free:  # rank 0 hosts the store there
        init_method = f"tcp://127.0.0.1:{free.getsockname()[1]}"
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    given = {0: token, 1: b"a guess" if intruder else token}
    procs = [ctx.Process(target=_member, args=(r, init_method, given[r], q)) for r in (0, 1)]
    for p in procs:
        p.start()
    seen = dict(q.get(timeout=60) for _ in procs)
    for p in procs:
        p.join(60)
    if intruder:  # each side refuses the other: the coordinator reads nothing from the intruder
        assert seen[0].startswith("rank(s) 1 did not prove") and seen[1] != "accepted"
    else:
        assert seen == {0: "accepted", 1: "accepted"}
