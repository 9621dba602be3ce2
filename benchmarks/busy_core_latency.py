"""How late a message reaches a thread whose core is busy with compute.

A sender on one core sends small tensors (one every 2-6 ms, at random) to a receiver pinned to
the other core, where k compute-bound processes (a worker's forward+backward loop on one torch
thread, as psreal's CPU workers run) share the receiver's core. The one-way latency is what the
receiving thread sees: from the send to the moment its blocking `recv` returns. Printed per k,
in milliseconds: p10, p50, p90, p95 and the mean, for

- `gloo`: torch.distributed gloo `send`/`recv` (how psreal moves tensors): the bytes are read by
  gloo's own thread, which then wakes the receiving one;
- `socket`: a plain blocking socket read by the receiving thread (one wake-up).

The simulator hands a delivered message to its role at once (docs/profiling.md, "What a profile
does not capture"); this measures what it leaves out.

Usage: .venv/bin/python benchmarks/busy_core_latency.py [--messages N] [--max-hogs K]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import random
import socket
import statistics
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

if TYPE_CHECKING:
    from collections.abc import Iterator

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _hog(core: int) -> None:
    os.sched_setaffinity(0, {core})
    torch.set_num_threads(1)
    model = torch.nn.Sequential(
        torch.nn.Linear(784, 256),
        torch.nn.ReLU(),
        torch.nn.Linear(256, 256),
        torch.nn.ReLU(),
        torch.nn.Linear(256, 10),
    )
    x = torch.randn(128, 784)
    while True:
        model.zero_grad()
        model(x).sum().backward()


def gloo_pair(rank: int, addr: mp.Queue, cores: tuple[int, int]) -> None:
    """Join a 2-process gloo group as `rank`, pinned to `cores[rank]`, one torch thread."""
    from psreal.launch import local_rendezvous

    os.sched_setaffinity(0, {cores[rank]})
    torch.set_num_threads(1)
    if rank == 0:  # psreal's rendezvous: the store listens first, on a port the OS keeps for it
        store, init = local_rendezvous("127.0.0.1", 2, 300.0)
        addr.put(init)
        dist.init_process_group("gloo", store=store, rank=0, world_size=2)
    else:
        dist.init_process_group("gloo", init_method=addr.get(timeout=300), rank=1, world_size=2)


def run_gloo_pair(ctx: Any, target: Any, args: tuple, out: mp.Queue) -> list[float]:
    """Run `target(rank, addr, *args)` in two spawned processes; what rank 1 puts on `out`."""
    addr: mp.Queue = ctx.Queue()
    roles = [ctx.Process(target=target, args=(r, addr, *args)) for r in (0, 1)]
    for p in roles:
        p.start()
    lat = out.get(timeout=300)
    for p in roles:
        p.join(30)
    return lat


@contextlib.contextmanager
def hogs_on(ctx: Any, k: int, core: int) -> Iterator[None]:
    """k compute-bound worker loops on `core`, computing for as long as the block runs."""
    hogs = [ctx.Process(target=_hog, args=(core,), daemon=True) for _ in range(k)]
    for p in hogs:
        p.start()
    try:
        time.sleep(0.5)  # they are computing
        yield
    finally:
        for p in hogs:
            p.kill()


def send_stamps(sock: socket.socket, n: int, core: int, ack: bool) -> None:
    """From `core`: once the receiver says it is ready, send it n send-time stamps (8 bytes, on
    the monotonic clock), one every 2-6 ms, each after its acknowledgement with `ack`."""
    old = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {core})
    try:
        sock.recv(1)
        for _ in range(n):
            time.sleep(random.uniform(0.002, 0.006))
            sock.sendall(time.monotonic_ns().to_bytes(8, "little"))
            if ack:
                sock.recv(1)
    finally:
        os.sched_setaffinity(0, old)


def print_header(
    name: str, cores: tuple[int, int], count: int, unit: str = "messages each"
) -> None:
    print(
        f"# {name}  {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC  "
        f"torch {torch.__version__}  "
        f"cores {cores}  {count} {unit}"
    )


def two_cores() -> tuple[int, int] | None:
    """The first two cores this process may use (None, with a message, when there are fewer)."""
    allowed = sorted(os.sched_getaffinity(0))
    if len(allowed) < 2:
        print("needs 2 cores", file=sys.stderr)
        return None
    return allowed[0], allowed[1]


def _gloo_role(rank: int, addr: mp.Queue, cores: tuple[int, int], n: int, out: mp.Queue) -> None:
    gloo_pair(rank, addr, cores)
    buf = torch.empty(8, dtype=torch.int64)
    lat = []
    for _ in range(n):
        if rank == 0:
            time.sleep(random.uniform(0.002, 0.006))
            buf[0] = time.monotonic_ns()
            dist.send(buf, 1)
        else:
            dist.recv(buf, 0)
            lat.append((time.monotonic_ns() - int(buf[0])) * 1e-9)
    if rank == 1:
        out.put(lat)
    dist.barrier()
    dist.destroy_process_group()


def _socket_receiver(core: int, conn: socket.socket, n: int, out: mp.Queue) -> None:
    os.sched_setaffinity(0, {core})
    conn.sendall(b"r")  # ready: the sender starts now
    lat = []
    for _ in range(n):
        data = conn.recv(8, socket.MSG_WAITALL)
        lat.append((time.monotonic_ns() - int.from_bytes(data, "little")) * 1e-9)
    out.put(lat)


def measure(kind: str, hogs: int, n: int, cores: tuple[int, int]) -> list[float]:
    ctx = mp.get_context("spawn")
    out: mp.Queue = ctx.Queue()
    with hogs_on(ctx, hogs, cores[1]):
        if kind == "gloo":
            lat = run_gloo_pair(ctx, _gloo_role, (cores, n, out), out)
        else:
            a, b = socket.socketpair()
            rx = ctx.Process(target=_socket_receiver, args=(cores[1], b, n, out))
            rx.start()
            send_stamps(a, n, cores[0], ack=False)
            lat = out.get(timeout=300)
            rx.join(30)
    return lat[n // 10 :]  # after a warm-up


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--messages", type=int, default=400)
    ap.add_argument("--max-hogs", type=int, default=3)
    args = ap.parse_args()
    cores = two_cores()
    if cores is None:
        return 2
    print_header("busy_core_latency", cores, args.messages)
    print(
        f"{'path':8s} {'hogs':>4s} {'p10':>7s} {'p50':>7s} {'p90':>7s} {'p95':>7s} {'mean':>7s}"
        "  (ms, one way)"
    )
    for kind in ("gloo", "socket"):
        for k in range(args.max_hogs + 1):
            lat = sorted(measure(kind, k, args.messages, cores))
            q = [lat[int(len(lat) * f)] * 1e3 for f in (0.1, 0.5, 0.9, 0.95)]
            print(
                f"{kind:8s} {k:4d} "
                + " ".join(f"{x:7.3f}" for x in q)
                + f" {statistics.fmean(lat) * 1e3:7.3f}",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
