"""The real transport's costs, from two pinned processes exchanging messages through the
Transport and the link arbiter over an infinitely fast link: CPU per message and per byte at
each end (with and without app emulation), the arbiter's CPU per message, a message's delay
beyond its link time, and the wire's speed. They do not depend on the scenario: cached per
host (`host_transport`)."""

from __future__ import annotations

import datetime
import json
import os
import statistics
import time
from typing import Any

import torch

from pssim.profile import LinearCost, host_cache_path, host_id
from pssim.results import write_atomic_text

from ..roles import host_cores, set_threads
from .timing import _fit

_STREAM_SIZES = (64, 16_384, 262_144, 1_048_576, 4_194_304)


def _stream_reps(n: int) -> int:
    return max(20, min(2000, int(2e8 // max(n, 1))))


def _transport_child(rank: int, world: int, init_method: str, n_ping: int) -> None:
    """Ranks 1 and 2 (endpoints 0 and 1) exercise the real Transport; results go to rank 0."""
    import queue
    import resource

    import torch.distributed as dist

    from pssim import wire

    from ..control import ControlClient
    from ..launch import _set_pdeathsig
    from ..transport import Transport

    _set_pdeathsig()
    set_threads()
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[(rank - 1) % host_cores()]})
    dist.init_process_group("gloo", init_method=init_method, rank=rank, world_size=world)
    obj: list[Any] = [None]
    dist.broadcast_object_list(obj, src=0)
    ep, peer = rank - 1, 2 - rank
    ctl = ControlClient(obj[0], rank, ep)
    out: dict[str, Any] = {}

    def cpu() -> float:
        r = resource.getrusage(resource.RUSAGE_SELF)
        return r.ru_utime + r.ru_stime

    for emulate in (False, True):
        tr = Transport(ep, lambda e: e + 1, ctl, emulate=emulate)
        q: queue.SimpleQueue = queue.SimpleQueue()
        tr.receive_from(peer, q.put)
        dist.barrier()
        rtts = []
        c_ping = cpu()
        for i in range(n_ping):  # header-only ping-pong: latency and CPU of the code path
            if ep == 0:
                t0 = time.perf_counter()
                tr.send(1, wire.PULL, step=i).wait()
                q.get()
                rtts.append(time.perf_counter() - t0)
            else:
                q.get()
                tr.send(0, wire.REPLY, step=i).wait()
        mode = "emulated" if emulate else "plain"
        out[f"rtt_{mode}"] = rtts[n_ping // 10 :]
        out[f"ping_cpu_{mode}"] = (cpu() - c_ping) / (2 * n_ping)  # per message sent or received
        # one-way streams: CPU seconds per message at each end, by size
        for n in _STREAM_SIZES:
            reps = _stream_reps(n)
            payload = torch.zeros(n, dtype=torch.uint8)
            dist.barrier()
            c0, t0 = cpu(), time.perf_counter()
            if ep == 0:
                hs = [tr.send(1, wire.PUSH, step=i, payload=payload) for i in range(reps)]
                for h in hs:
                    h.wait()
                q.get()
            else:
                for _ in range(reps):
                    q.get()
                tr.send(0, wire.REPLY).wait()
            out[f"stream_{mode}_{n}"] = ((cpu() - c0) / reps, (time.perf_counter() - t0) / reps)
        tr.stop(peer)
        tr.join()
    ctl.bye()
    dist.gather_object(out, None, dst=0)
    dist.destroy_process_group()
    os._exit(0)


def measure_transport(n_ping: int = 300) -> dict[str, Any]:
    """Per-message and per-byte costs of the real transport between two pinned processes."""

    import torch.distributed as dist
    import torch.multiprocessing as mp

    from pssim.layout import LinkLayout

    from ..control import ControlServer
    from ..launch import local_rendezvous

    store, init = local_rendezvous("127.0.0.1", 3, 300.0)
    ctx = mp.get_context("spawn")
    procs = [
        ctx.Process(target=_transport_child, args=(r, 3, init, n_ping), daemon=True) for r in (1, 2)
    ]
    for p in procs:
        p.start()
    links = LinkLayout([1e15] * 4, ["a.out", "a.in", "b.out", "b.in"], 2, None, 0.0, 0.0)
    server = ControlServer(
        links, core=sorted(os.sched_getaffinity(0))[-1]
    )  # pinned as in psreal runs
    server.start()
    arbiter: list[float] = []
    try:
        dist.init_process_group(
            "gloo", store=store, rank=0, world_size=3, timeout=datetime.timedelta(seconds=300)
        )
        dist.broadcast_object_list([server.addr], src=0)
        dist.barrier()  # plain ping-pong
        for _ in _STREAM_SIZES:
            dist.barrier()
        dist.barrier()  # emulated ping-pong
        arb_ping = server.cpu_s
        for _ in _STREAM_SIZES:  # emulated streams: the arbiter's CPU per message, by size
            dist.barrier()
            arbiter.append(server.cpu_s)
        out: list[Any] = [None, None, None]
        dist.gather_object({}, out, dst=0)
        arbiter.append(server.cpu_s)
        dist.destroy_process_group()
    finally:
        for p in procs:
            p.join(30)
            if p.is_alive():
                p.kill()
        server.stop()
    snd, rcv = out[1], out[2]
    sizes = list(_STREAM_SIZES)
    fits = {
        mode: (
            _fit(sizes, [snd[f"stream_{mode}_{n}"][0] for n in sizes]),
            _fit(sizes, [rcv[f"stream_{mode}_{n}"][0] for n in sizes]),
        )
        for mode in ("plain", "emulated")
    }
    arb = [
        (b - a) / (_stream_reps(n) + 1)
        for a, b, n in zip(arbiter, arbiter[1:], sizes, strict=False)
    ]
    # a PS exchanges requests and replies one at a time: the fixed CPU per message is the
    # ping-pong's (each wake-up paid per message), the per-byte part the streams'
    arb_a = (arbiter[0] - arb_ping) / (2 * n_ping) if arbiter else 0.0

    def per_message(fit: LinearCost, mode: str, side: dict[str, Any]) -> LinearCost:
        return LinearCost(a=side[f"ping_cpu_{mode}"] / 2, b=fit.b)

    plain = statistics.median(snd["rtt_plain"]) / 2
    emulated = statistics.median(snd["rtt_emulated"]) / 2
    # the wire: wall seconds per message of a one-way stream, a + b * bytes; 1/b is the most the
    # host's transport moves for one connection however fast the emulated link is
    wire_fit = _fit(sizes, [snd[f"stream_plain_{n}"][1] for n in sizes])
    return {
        # CPU seconds per message at each end, a + b * bytes, without and with app emulation
        # (the latter adds the arbiter client's work: START, the DONE reader, the hand-over)
        "send_cpu": per_message(fits["plain"][0], "plain", snd),
        "recv_cpu": per_message(fits["plain"][1], "plain", rcv),
        "send_cpu_app": per_message(fits["emulated"][0], "emulated", snd),
        "recv_cpu_app": per_message(fits["emulated"][1], "emulated", rcv),
        # the link arbiter's own CPU per message (START, completion, two DONEs), on its core
        "arbiter_cpu": LinearCost(a=arb_a, b=_fit(sizes[: len(arb)], arb).b if arb else 0.0),
        # the critical path of a header-only message from send to hand-over (threads, gloo, and
        # with app emulation the arbiter's round trip): what a message takes beyond its link time
        "delay_none_s": plain,
        "delay_app_s": emulated,
        "wire_bytes_per_s": 1.0 / wire_fit.b if wire_fit.b > 0 else None,
        "samples": {
            "one_way_plain_s": plain,
            "one_way_emulated_s": emulated,
            "arbiter_cpu_per_message_s": dict(zip(sizes, arb, strict=False)),
            "streams": {
                mode: {
                    n: {"send": snd[f"stream_{mode}_{n}"], "recv": rcv[f"stream_{mode}_{n}"]}
                    for n in sizes
                }
                for mode in ("plain", "emulated")
            },
        },
    }


_COST_KEYS = ("send_cpu", "recv_cpu", "send_cpu_app", "recv_cpu_app", "arbiter_cpu")


def host_transport(force: bool = False) -> dict[str, Any]:
    path = host_cache_path("transport-v4", "any")
    if path.exists() and not force:
        d = json.loads(path.read_text())
        for k in _COST_KEYS:
            d[k] = LinearCost(**d[k])
        return d
    d = measure_transport()
    text = json.dumps(
        {**d, "host": host_id(), **{k: d[k].model_dump() for k in _COST_KEYS}}, indent=2
    )
    write_atomic_text(path, text)
    return d
