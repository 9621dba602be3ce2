#!/usr/bin/env python3
"""Hand-over delays of a psreal message trace (PSREAL_MSG_TRACE=DIR psreal run FILE; see
psreal/msgtrace.py).

    python scripts/msg_latency.py DIR

Per message kind, in milliseconds (p50 / p90 / mean over the run, warm-up included):
- link: the emulated link time, from the arbiter's start to `due` (when the link delivered it);
- deliver - due: how long after the link delivered it the receiving role had it;
- notice - due (pushes): how long after that the worker's send completed, which ends its step;
- gloo - due (pushes): the sender's gloo transfer end relative to `due` (positive: gloo was the
  later one), and the share of messages where it was;
- send - hdr: how long the receiving thread took to get the header after the send;
- shard take - deliver: how long a delivered message waited for the shard's main loop.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from psreal import msgtrace
from pssim import wire

NAMES = {
    wire.PULL: "pull request",
    wire.REPLY: "pull reply",
    wire.PUSH: "push",
    wire.ACT: "activation",
    wire.ACT_GRAD: "activation gradient",
    wire.LEAVE: "leave",
}


def delays(roles: dict[str, list], arbiter: list) -> dict[str, dict[str, list[float]]]:
    start = {(e[2], e[4]): e[0] for e in arbiter if e[1] == "start"}  # (src, seq) -> time
    due = {(e[2], e[3]): e[5] for e in arbiter if e[1] == "done"}
    by: dict[tuple[str, tuple[int, int]], float] = {}  # (event, (src, seq)) -> time, first seen
    take: dict[tuple[int, int], float] = {}
    sends: list[tuple] = []
    for events in roles.values():
        for e in events:
            if e[1] == "send":
                sends.append(e)
            elif e[1] in ("hdr", "deliver", "gloo_done", "handle_done"):
                by.setdefault((e[1], (e[2], e[3])), e[0])
            elif e[1] == "srv_get":
                take.setdefault((e[2], e[3]), e[0])
    out: dict[str, dict[str, list[float]]] = {}
    for t, _, src, seq, _dst, kind, _nbytes in sends:
        k, d = (src, seq), out.setdefault(NAMES.get(kind, str(kind)), {})
        got = by.get(("deliver", k))
        if k in due:
            if k in start:
                d.setdefault("link", []).append(due[k] - start[k])
            # a sender waits for its send at once only for a push (the end of its step); other
            # sends it collects later, so their completion says nothing about the hand-over
            checks = (
                ("deliver - due", "deliver"),
                ("notice - due", "handle_done"),
                ("gloo - due", "gloo_done"),
            )
            for name, ev in checks if kind == wire.PUSH else checks[:1]:
                if (ev, k) in by:
                    d.setdefault(name, []).append(by[(ev, k)] - due[k])
        if ("hdr", k) in by:
            d.setdefault("hdr - send", []).append(by[("hdr", k)] - t)
        if got is not None and k in take:
            d.setdefault("shard take - deliver", []).append(take[k] - got)
    return out


def main(argv: list[str]) -> int:
    if len(argv) != 1 or not Path(argv[0]).is_dir():
        print("usage: msg_latency.py DIR (a PSREAL_MSG_TRACE folder)", file=sys.stderr)
        return 2
    roles, arbiter = msgtrace.load(argv[0])
    if not roles:
        print(
            f"error: {argv[0]}: no rank*.json (was PSREAL_MSG_TRACE set for the run?)",
            file=sys.stderr,
        )
        return 2
    for kind, d in delays(roles, arbiter).items():
        print(f"{kind}:")
        for name, v in d.items():
            a = np.asarray(v) * 1e3
            extra = f"  later than the link in {np.mean(a > 0):.0%}" if name == "gloo - due" else ""
            print(
                f"  {name:22s} p50 {np.median(a):7.3f}  p90 {np.percentile(a, 90):7.3f}  "
                f"mean {a.mean():7.3f} ms  (n={a.size}){extra}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
