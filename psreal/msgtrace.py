"""Opt-in message trace: when each message was sent, registered, delivered and noticed, per process.

Set `PSREAL_MSG_TRACE=DIR` and every role of a `psreal run` writes DIR/rank<r>.json, the
coordinator DIR/arbiter.json: lists of `[time, event, ...]` on the host's monotonic clock (one clock
for all processes of one machine; multi-node traces are per node). Events:

- role: `send src seq dst kind bytes`, `hdr src seq kind` (the receiving thread got the header),
  `deliver src seq kind` (handed to the role), `gloo_done src seq` and `handle_done src seq` (the
  sender's gloo transfer finished / its send completed: delivered and noticed), `done_rx src seq`
  (the arbiter's DONE reached the process), `srv_get src seq kind` (a shard's main loop took it),
  `cpu_compute_start proc step thread_cpu process_cpu` and `cpu_compute_end ...` (a worker's
  main-thread and whole-process CPU clocks around its compute phase);
- arbiter: `start src dst seq bytes`, `done src seq dst due` (DONE sent; `due` is when the
  emulated link delivered it).

`scripts/msg_latency.py DIR` turns a trace into the hand-over delays that docs/profiling.md
discusses. Off (the default), each hook costs one boolean test.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

ENABLED = bool(os.environ.get("PSREAL_MSG_TRACE"))
EVENTS: list[tuple[Any, ...]] = []


def mark(*fields: Any) -> None:
    """Record an event now (only with PSREAL_MSG_TRACE set)."""
    if ENABLED:
        EVENTS.append((time.monotonic(), *fields))


def load(folder: str | Path) -> tuple[dict[str, list], list]:
    """A trace folder's events: ({"rank<r>": events}, the arbiter's events or [])."""
    folder = Path(folder)
    roles = {
        f.stem: json.loads(f.read_text())
        for f in sorted(folder.glob("rank*.json"), key=lambda f: int(f.stem[4:]))
    }
    arb = folder / "arbiter.json"
    return roles, json.loads(arb.read_text()) if arb.exists() else []


def dump(name: str) -> None:
    """Write this process's events to $PSREAL_MSG_TRACE/<name>.json (only when tracing)."""
    if not ENABLED:
        return
    folder = Path(os.environ["PSREAL_MSG_TRACE"])
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.json").write_text(json.dumps(EVENTS))
