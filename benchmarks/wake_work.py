"""How long a woken thread takes to do a short piece of CPU work on a core where compute runs.

A sender on one core sends 8-byte messages (one every 2-6 ms, at random) to a receiver process
pinned to the other core, where k compute-bound processes (a worker's forward+backward loop on
one torch thread, as psreal's CPU workers run) share the receiver's core. On each message the
receiver does W ms of CPU work (a loop on its thread's CPU clock), either

- `direct`: in the thread the message woke (one wake-up), or
- `handed`: in a second thread that the woken one hands the message to through a queue (two
  wake-ups, as psreal's receiving threads hand messages to a role's main thread), or
- `local`: in the woken thread, with the sender on the receiver's core (the waker runs on the
  core, as where a role messages a role on its own core), or
- `gloo`: in the thread whose torch.distributed gloo `recv` returned (how psreal's receiving
  threads get a message: gloo's own thread reads the bytes, then wakes the receiving one).

Printed per path, k and W: the median, mean and 90th percentile of (time from the send to the
end of the work) minus the median of the same with k = 0, in ms: the wait that the compute on
the core adds to the work. How the kernel shares a core between a woken thread and compute-bound
ones decides it:

- the woken thread preempts at once and runs its work through: about 0 whatever W;
- it waits for the running compute thread's slice to end, then runs its work through: about
  half a slice whatever W;
- it shares the core in turns with the compute threads: growing with W and with k.

`pssim.sim.host.SlicedCore` runs a message's work before compute at once, and
`HostNetwork.hand_over` lets a delivered message wait for the running compute slice; this measures
both against the kernel (docs/notes/calibration-log.md, "How woken work shares a core"; results in
reports/benchmarks/wake_work.txt). Usage:
.venv/bin/python benchmarks/wake_work.py [--messages N] [--max-hogs K]
    [--paths direct,handed,local,gloo] [--work 0.1,0.3,...]
"""

from __future__ import annotations

import argparse
import os
import queue
import random
import socket
import statistics
import sys
import threading
import time
from pathlib import Path

import torch
import torch.multiprocessing as mp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.busy_core_latency import (  # noqa: E402
    gloo_pair,
    hogs_on,
    print_header,
    run_gloo_pair,
    send_stamps,
    two_cores,
)

WORK_MS = (0.1, 0.3, 0.7, 1.5, 3.0)


def _spin(work_s: float) -> None:
    end = time.thread_time() + work_s
    while time.thread_time() < end:
        pass


def _receiver(
    core: int, conn: socket.socket, n: int, work_s: float, handed: bool, out: mp.Queue
) -> None:
    os.sched_setaffinity(0, {core})
    lat: list[float] = []
    q: queue.SimpleQueue = queue.SimpleQueue()

    def worker() -> None:
        for _ in range(n):
            sent = q.get()
            _spin(work_s)
            lat.append((time.monotonic_ns() - sent) * 1e-9)

    t = threading.Thread(target=worker) if handed else None
    if t is not None:
        t.start()
    conn.sendall(b"r")  # ready: the sender starts now
    for _ in range(n):
        sent = int.from_bytes(conn.recv(8, socket.MSG_WAITALL), "little")
        if t is not None:
            q.put(sent)
        else:
            _spin(work_s)
            lat.append((time.monotonic_ns() - sent) * 1e-9)
        conn.sendall(b"k")  # done: the sender waits for it, so one message is in flight at a time
    if t is not None:
        t.join()
    out.put(lat)


def _gloo_role(
    rank: int, addr: mp.Queue, cores: tuple[int, int], n: int, work_s: float, out: mp.Queue
) -> None:
    import torch.distributed as dist

    gloo_pair(rank, addr, cores)
    buf = torch.empty(8, dtype=torch.int64)
    lat = []
    for _ in range(n):
        if rank == 0:
            time.sleep(random.uniform(0.002, 0.006))
            buf[0] = time.monotonic_ns()
            dist.send(buf, 1)
            dist.recv(buf, 1)  # done: one message in flight at a time
        else:
            dist.recv(buf, 0)
            _spin(work_s)
            lat.append((time.monotonic_ns() - int(buf[0])) * 1e-9)
            dist.send(buf, 0)
    if rank == 1:
        out.put(lat)
    dist.barrier()
    dist.destroy_process_group()


def measure(hogs: int, n: int, work_s: float, path: str, cores: tuple[int, int]) -> list[float]:
    ctx = mp.get_context("spawn")
    out: mp.Queue = ctx.Queue()
    with hogs_on(ctx, hogs, cores[1]):
        if path == "gloo":
            return run_gloo_pair(ctx, _gloo_role, (cores, n, work_s, out), out)[n // 10 :]
        a, b = socket.socketpair()
        rx = ctx.Process(target=_receiver, args=(cores[1], b, n, work_s, path == "handed", out))
        rx.start()
        send_stamps(a, n, cores[1] if path == "local" else cores[0], ack=True)
        lat = out.get(timeout=300)
        rx.join(30)
    return lat[n // 10 :]  # after a warm-up


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--messages", type=int, default=200)
    ap.add_argument("--max-hogs", type=int, default=2)
    ap.add_argument("--paths", default="direct,handed,local,gloo")
    ap.add_argument(
        "--work", default=",".join(map(str, WORK_MS)), help="W values, ms, comma-separated"
    )
    args = ap.parse_args()
    cores = two_cores()
    if cores is None:
        return 2
    torch.set_num_threads(1)
    print_header("wake_work", cores, args.messages)
    print("# wait = (send to end of work) - the same with no compute on the core; ms")
    print(
        f"{'path':7s} {'hogs':>4s} {'work':>5s} {'p50 wait':>9s} {'mean wait':>9s} {'p90 wait':>9s}"
    )
    for path in args.paths.split(","):
        for w in map(float, args.work.split(",")):
            base = None
            for k in range(args.max_hogs + 1):
                lat = sorted(measure(k, args.messages, w * 1e-3, path, cores))
                if base is None:
                    base = statistics.median(lat)
                q = [(lat[int(len(lat) * f)] - base) * 1e3 for f in (0.5, 0.9)]
                mean = (statistics.fmean(lat) - base) * 1e3
                print(f"{path:7s} {k:4d} {w:5.1f} {q[0]:9.3f} {mean:9.3f} {q[1]:9.3f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
