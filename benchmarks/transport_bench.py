"""How efficient psreal's transport is, unthrottled and under app link emulation.

Two processes play a worker (endpoint 0) and a server (endpoint 1) and do what a PS step does
with the network: the worker pushes a message of M bytes, the server answers with M bytes (a
pull reply), one exchange after another. Printed:

1. Unthrottled (`emulation: none`): push+pull bytes/s of psreal's Transport (header message +
   uint8 payload over gloo isend, one receiver thread per peer, a fresh buffer per message)
   against raw gloo between the same two processes, into preallocated buffers: blocking
   `dist.send`/`dist.recv`, and with the receive posted ahead (`dist.irecv`), the stronger
   baseline. Best of --repeat runs each. Goal: Transport >= 70% of raw.
2. Throttled (`emulation: app`): achieved bytes/s over the configured NIC bandwidth for a few
   bandwidths, with the coordinator's link arbiter (psreal/control.py) in this process, latency 0
   (so the ratio is the bandwidth's alone). "stream": all messages of a direction in flight at once
   (the arbiter's accuracy; goal within 2%); "exchange": the PS pattern above, one message at a
   time, which adds the per-message software cost (control round trip, thread hand-offs).

Usage: .venv/bin/python benchmarks/transport_bench.py [--quick]
Each role pins itself to one core, as psreal's roles do; on a 2-core machine the two processes
and the arbiter share the cores, so the numbers are for this machine only.
"""

from __future__ import annotations

import argparse
import datetime
import queue
import socket
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pssim import wire  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _peer(rank: int, port: int, ctl_addr: Any, mode: str, size: int, rounds: int, q: Any) -> None:
    """rank 0 = worker (pushes, times the exchanges), rank 1 = server (answers)."""
    import os

    from psreal.control import ControlClient
    from psreal.roles import set_threads
    from psreal.transport import Transport

    set_threads()  # the process set-up of a psreal role (one thread, glibc keeps freed buffers)
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[rank % len(os.sched_getaffinity(0))]})
    dist.init_process_group(
        "gloo",
        init_method=f"tcp://127.0.0.1:{port}",
        rank=rank,
        world_size=2,
        timeout=datetime.timedelta(seconds=120),
    )
    peer = 1 - rank
    buf = torch.randint(0, 255, (size,), dtype=torch.uint8)
    warm = max(2, rounds // 10)
    t0 = 0.0
    if mode == "raw":  # blocking send, then blocking receive
        for i in range(warm + rounds):
            if i == warm:
                dist.barrier()
                t0 = time.perf_counter()
            if rank == 0:
                dist.send(buf, peer)
                dist.recv(buf, peer)
            else:
                dist.recv(buf, peer)
                dist.send(buf, peer)
    elif mode == "raw-pre":  # the receive is posted (irecv) before the data can arrive
        other = torch.empty_like(buf)
        pending = dist.irecv(other, peer) if rank == 1 else None
        for i in range(warm + rounds):
            if i == warm:
                dist.barrier()
                t0 = time.perf_counter()
            if rank == 0:
                r = dist.irecv(other, peer)
                dist.send(buf, peer)
                r.wait()
            else:
                pending.wait()  # type: ignore[union-attr]
                pending = dist.irecv(other, peer) if i + 1 < warm + rounds else None
                dist.send(buf, peer)
    else:
        ctl = ControlClient(ctl_addr, rank, rank) if ctl_addr else None
        tr = Transport(
            rank, lambda ep: ep, ctl, emulate=ctl is not None
        )  # endpoint == gloo rank here
        inbox: queue.SimpleQueue = queue.SimpleQueue()
        tr.receive_from(peer, inbox.put)
        # both ends known to the arbiter before the first message (as psreal's roles)
        dist.barrier()
        sends = []
        if mode == "stream":  # every message at once, push direction then pull direction
            for direction in (0, 1):
                dist.barrier()
                t0 = time.perf_counter()
                if rank == direction:
                    hs = [tr.send(peer, wire.PUSH, step=i, payload=buf) for i in range(rounds)]
                    for h in hs:
                        h.wait()  # under app emulation: delivered
                    q.put((direction, rounds * size / (time.perf_counter() - t0)))
                else:
                    for _ in range(rounds):
                        assert inbox.get().kind == wire.PUSH, tr.errors
            warm = rounds = 0
        for i in range(warm + rounds):
            if i == warm:
                dist.barrier()
                t0 = time.perf_counter()
            if rank == 0:
                tr.send(peer, wire.PUSH, step=i, payload=buf).wait()
                msg = inbox.get()
                assert msg.kind == wire.REPLY and msg.payload.numel() == size, tr.errors
            else:
                msg = inbox.get()
                assert msg.kind == wire.PUSH, tr.errors
                sends.append(tr.send(peer, wire.REPLY, step=i, payload=buf))
        for h in sends:
            h.wait()
        dist.barrier()
        tr.stop(peer)
        tr.join()
        if ctl is not None:
            ctl.bye()
    elapsed = time.perf_counter() - t0
    if rank == 0 and mode != "stream":
        q.put(2 * rounds * size / elapsed)
    dist.barrier()
    dist.destroy_process_group()


def measure(mode: str, size: int, rounds: int, gbps: float | None = None) -> float:
    """push+pull payload bytes/s between two processes."""
    server = None
    addr = None
    if gbps is not None:
        from psreal.control import ControlServer
        from pssim.layout import link_layout
        from pssim.scenario import scenario_from_dict

        nic = {"bandwidth_gbps": gbps, "latency_us": 0}
        scn = scenario_from_dict(
            {
                "name": "bench",
                "model": {"kind": "linear", "input_dim": 4, "output_dim": 2},
                "cluster": {
                    "workers": {"count": 1, "nic": nic},
                    "servers": {"count": 1, "nic": nic},
                },
            }
        )
        server = ControlServer(link_layout(scn, 1))
        server.start()
        addr = server.addr
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    port = _free_port()
    procs = [ctx.Process(target=_peer, args=(r, port, addr, mode, size, rounds, q)) for r in (0, 1)]
    for p in procs:
        p.start()
    try:
        if mode == "stream":  # (push bytes/s, pull bytes/s) -> the slower direction
            return min(dict(q.get(timeout=600) for _ in range(2)).values())
        return float(q.get(timeout=600))
    finally:
        for p in procs:
            p.join(60)
        if server is not None:
            server.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer sizes and rounds")
    ap.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="best of this many runs per unthrottled figure (noisy hosts)",
    )
    args = ap.parse_args()
    sizes = [(64_000, 400), (1_000_000, 100), (16_000_000, 16)]
    if args.quick:
        sizes = [(1_000_000, 40)]
    print(
        "1. unthrottled: push+pull payload throughput between two processes (emulation: none)",
        flush=True,
    )
    print(
        f"   {'message':>10}  {'raw gloo send/recv':>19}  {'raw, recv pre-posted':>21}  "
        f"{'psreal Transport':>17}  "
        f"{'efficiency vs raw / pre-posted':>31}",
        flush=True,
    )
    for size, rounds in sizes:
        raw = max(measure("raw", size, rounds) for _ in range(args.repeat))
        pre = max(measure("raw-pre", size, rounds) for _ in range(args.repeat))
        ours = max(measure("transport", size, rounds) for _ in range(args.repeat))
        print(
            f"   {size / 1e6:>8.3f}MB  {raw / 1e6:>14.1f}MB/s  {pre / 1e6:>16.1f}MB/s  "
            f"{ours / 1e6:>12.1f}MB/s  "
            f"{ours / raw:>18.1%} / {ours / pre:>6.1%}",
            flush=True,
        )
    print(
        "\n2. throttled: achieved / configured bandwidth under app emulation (latency 0)",
        flush=True,
    )
    print(
        "   stream: all messages in flight at once, each direction (the slower one shown): "
        "the arbiter's accuracy",
        flush=True,
    )
    print(
        "   exchange: push, wait, pull reply, as above: "
        "adds the per-message software cost of a PS step",
        flush=True,
    )
    print(
        f"   {'bandwidth':>10}  {'message':>10}  {'configured':>12}  {'stream':>20}  "
        f"{'exchange':>20}",
        flush=True,
    )
    for gbps, size in [(0.1, 1_000_000), (1.0, 4_000_000), (5.0, 16_000_000)]:
        conf = gbps * 125e6
        rounds = max(4, int(2.0 * conf / (2 * size)))  # about 2 s of traffic
        if args.quick:
            rounds = max(3, rounds // 4)
        stream = measure("stream", size, rounds, gbps)
        exch = measure("transport", size, rounds, gbps)
        print(
            f"   {gbps:>6.1f}Gb/s  {size / 1e6:>8.3f}MB  {conf / 1e6:>9.1f}MB/s  "
            f"{stream / 1e6:>9.1f}MB/s {stream / conf:>7.1%}  "
            f"{exch / 1e6:>9.1f}MB/s {exch / conf:>7.1%}",
            flush=True,
        )


if __name__ == "__main__":
    main()
