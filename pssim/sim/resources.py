"""SimPy resources of the target cluster: fluid-shared NICs and fabric (`Network`) and devices
(`Processors`).

`Network` wraps a `FluidSystem` over every NIC direction (and the fabric) and keeps the SimPy
clock and the fluid state in step: a message start queues a flow and, once per instant, one
recompute runs at the *end* of that instant (a SimPy event of lower priority than every ordinary
event due then, so all messages started at one instant share one recompute), and a timer fires at
the next completion. A message from a to b crosses a's egress, b's ingress and the fabric if any,
and is delivered `latency` after its last byte drains (DESIGN.md section 4: each message pays its
latency once); deliveries due at the same instant share one SimPy timeout and run in the order
the messages were sent. A receiver that wants to act once on everything that arrives at one
instant asks for `after_arrivals`.

`Processors` models each device as an egalitarian processor-sharing server with priority classes
(`SharedProcessor`: n jobs of the most urgent class on one each get 1/n of it), exactly the
max-min allocation of single-resource flows, computed per resource. A device only one process
ever uses (a worker's own GPU) can never hold two jobs at once, since a process runs its jobs one
after another, so its job is a plain timeout.

This is the whole model of the target cluster. The run psreal makes on *this* machine adds the
host model (`pssim.sim.host`): its cores, the OS scheduler's slice, each message's CPU at both
ends, the transport's cap and psreal's link arbiter. It plugs in by subclassing the three
classes here through their hooks: `Network.receiver`, `Network.continues`,
`Network._completed`, `SharedProcessor`'s `_left`, `_ended` and `_no_job_ended`, and
`Processors.run`'s `after` and `who` (which the target cluster ignores).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import simpy

from ..fluid import _DONE_TOL_S, FluidSystem
from .clock import at_end_of_instant

if TYPE_CHECKING:
    from ..layout import LinkLayout, Placement
    from ..scenario import Scenario

# A message is a tuple or list: (delay after the last byte, deliver function, payload...); the
# network calls deliver(message) when it arrives.
Message = Sequence[Any]

# Priority classes of work on a shared core or device (a lower number runs first; SharedProcessor).
# ARBITER is psreal's link arbiter on this host's cores (pssim.sim.host).
ARBITER, ORDINARY, COMPUTE = 0, 1, 2


class Network:
    """Full-duplex NICs for every worker process and server, and the optional fabric.

    Endpoints are ints: worker processes 0..P-1, servers P..P+S-1. Resource 2e is endpoint e's
    egress, 2e+1 its ingress, the last one the fabric (`pssim.layout.LinkLayout`). `overhead_s`
    is added to every message's latency and `cap_bytes_per_s` bounds every message's rate: both
    are the host model's (`pssim.sim.host.HostNetwork`); a target cluster has neither.
    """

    def __init__(
        self,
        env: simpy.Environment,
        layout: LinkLayout,
        overhead_s: float = 0.0,
        cap_bytes_per_s: float = np.inf,
    ) -> None:
        self.env = env
        self.n_procs = layout.n_procs
        self.fabric: int | None = layout.fabric
        self.sys = FluidSystem(layout.caps, layout.names)
        lw, ls, ov = layout.lat_w, layout.lat_s, overhead_s
        # a message pays the larger endpoint latency once (LinkLayout.delay_of)
        self.delay_w2w = lw + ov
        self.delay_w2s = max(lw, ls) + ov
        self.delay_s2s = ls + ov
        # with equal latencies (the usual case) every message has the same delay
        self._one_delay = self.delay_w2w == self.delay_w2s == self.delay_s2s
        self._recompute_due = False
        self._next_t = float("inf")  # next completion at the current rates
        self._timers: set[float] = set()  # times of completion timers not yet fired
        self._due_at = -1.0  # deliveries grouped by delay, for completions at time _due_at
        self._due: dict[float, list[Message]] = {}
        self.messages = 0
        self._hooks: list[Callable[[], None]] = []
        self.cap = cap_bytes_per_s

    def resources(self, src: int, dst: int) -> tuple[int, ...]:
        if self.fabric is None:
            return (2 * src, 2 * dst + 1)
        return (2 * src, 2 * dst + 1, self.fabric)

    def delay(self, src: int, dst: int) -> float:
        a, b = src >= self.n_procs, dst >= self.n_procs
        return self.delay_s2s if a and b else self.delay_w2s if a or b else self.delay_w2w

    def receiver(self, ep: int, fn: Callable[[Any], None]) -> Callable[[Any], None]:
        """The function that hands a message delivered to endpoint `ep` to its thread, which runs
        `fn` on it: `fn` itself in a target cluster (the host model's thread may wait for its
        core: `HostNetwork.hand_over`)."""
        return fn

    def continues(self, ep: int, job: simpy.Event) -> None:
        """Endpoint `ep`'s sending thread is the one that runs `job`: nothing to a target
        cluster (the host model's threads keep their core, `pssim.sim.host`)."""

    def _completed(self, now: float) -> list[Message]:
        """The messages whose last byte has drained by `now` (the fluid system's)."""
        return self.sys.pop_completed(now)

    def send(self, res: tuple[int, ...], nbytes: float, msg: Message) -> None:
        """Start message `msg` over `res` (see `resources`): `msg[1](msg)` runs `msg[0]` seconds
        after its last byte has drained."""
        self.messages += 1
        self.sys.add(self.env.now, res, nbytes, msg, self.cap)
        if not self._recompute_due:
            self._recompute_due = True
            at_end_of_instant(self.env, self._recompute)

    def send_many(self, res: np.ndarray, nbytes: list[float], msgs: list[Message]) -> None:
        """Start several messages at once (`res`: one row of resources per message); the same as
        `send` one by one, in order."""
        self.messages += len(msgs)
        self.sys.add_many(self.env.now, res, nbytes, msgs, self.cap)
        if not self._recompute_due:
            self._recompute_due = True
            at_end_of_instant(self.env, self._recompute)

    def routes(self, src: int | list[int], dst: int | list[int]) -> np.ndarray:
        """Resource rows of messages src -> dst (either side may be a list): for `send_many`."""
        src_l = src if isinstance(src, list) else [src]
        dst_l = dst if isinstance(dst, list) else [dst]
        k = max(len(src_l), len(dst_l))
        return np.array(
            [self.resources(src_l[i % len(src_l)], dst_l[i % len(dst_l)]) for i in range(k)],
            dtype=np.int64,
        )

    # ------------------------------------------------------------------------- fluid driver
    def _recompute(self, _ev: simpy.Event) -> None:
        self._recompute_due = False
        self.sys.advance(self.env.now)
        self.sys.recompute()
        self._arm()

    def _arm(self) -> None:
        t = self.sys.next_completion()
        self._next_t = t
        if t == float("inf") or t in self._timers:
            return
        self._timers.add(t)
        self.env.timeout(max(0.0, t - self.env.now), t).callbacks.append(self._on_timer)  # type: ignore[union-attr]

    def _on_timer(self, ev: simpy.Event) -> None:
        t = ev.value
        self._timers.discard(t)
        if t != self._next_t:
            return  # a later recompute moved the next completion; its own timer handles it
        now = self.env.now
        msgs = self._completed(now)
        if msgs:
            if now != self._due_at:
                self._due_at = now
                self._due = {}
            d0 = msgs[0][0]
            if self._one_delay:
                self._deliver_after(d0, msgs)
            else:
                for msg in msgs:
                    if msg[0] != d0:  # mixed delays: deliver each after its own
                        for msg2 in msgs:
                            self._deliver_after(msg2[0], [msg2])
                        break
                else:
                    self._deliver_after(d0, msgs)  # one delay for all
        if not self._recompute_due:
            self.sys.recompute()
            self._arm()

    def _deliver_after(self, delay: float, msgs: list[Message]) -> None:
        """Deliver `msgs` `delay` from now; one SimPy timeout per delay and instant. A delay too
        small to move the clock (now + delay == now, late in a long run) is no delay: its
        timeout would fire within this instant, before later messages joined its list."""
        now = self.env.now
        if delay <= 0.0 or now + delay == now:
            self._deliver(msgs)
            return
        lst = self._due.get(delay)
        if lst is None:
            self._due[delay] = msgs
            self.env.timeout(delay, msgs).callbacks.append(self._run_deliveries)  # type: ignore[union-attr]
        else:
            lst += msgs

    def _run_deliveries(self, ev: simpy.Event) -> None:
        self._deliver(ev.value)

    def _deliver(self, msgs: list[Message]) -> None:
        """Hand over messages that arrive together, then run the receivers' `after_arrivals`
        hooks."""
        for msg in msgs:
            msg[1](msg)
        self._run_hooks()

    def _run_hooks(self) -> None:
        if self._hooks:
            hooks, self._hooks = self._hooks, []
            for fn in hooks:
                fn()

    def after_arrivals(self, fn: Callable[[], None]) -> None:
        """Run `fn` once every message arriving at this instant together with the current one
        has been handed over (a receiver acts on all of them at once, in the order it asked)."""
        self._hooks.append(fn)


class SharedProcessor:
    """One device shared by several processes, with strict priority classes.

    Jobs of the most urgent class present run; the others wait: ORDINARY work (the codec and
    optimiser calls of a role woken by a message) preempts COMPUTE. Within a class, jobs share
    egalitarianly (k jobs progress at 1/k each); a job of w standalone seconds that runs alone
    takes w. Jobs that finish within `_DONE_TOL_S` of each other complete together, in arrival
    order. A job is [standalone seconds left, event, class, slice left]; the slice is the host
    model's (`pssim.sim.host.SlicedCore`), 0 here.
    """

    def __init__(self, env: simpy.Environment, name: str) -> None:
        self.env = env
        self.name = name
        self.quantum = 0.0
        self.jobs: list[list[Any]] = []  # in arrival order
        self._t = 0.0  # when `jobs` were last drained
        self._next_t = float("inf")

    def run(self, work_s: float, priority: int = ORDINARY) -> simpy.Event:
        """A job of `work_s` seconds of standalone work of class `priority`."""
        ev = simpy.Event(self.env)
        self._drain()
        self.jobs.append([work_s, ev, priority, self.quantum])
        self._arm()
        return ev

    def _active(self) -> list[list[Any]]:
        """The jobs that progress now: those of the most urgent class."""
        top = min(j[2] for j in self.jobs)
        return [j for j in self.jobs if j[2] == top]

    def _drain(self) -> None:
        now = self.env.now
        if self.jobs and now > self._t:
            active = self._active()
            d = (now - self._t) / len(active)
            for j in active:
                j[0] -= d
                j[3] -= d
        self._t = now

    def _left(self, active: list[list[Any]]) -> float:
        """Time from now to the next change among the `active` jobs: the first one's end."""
        return max(min(j[0] for j in active), 0.0) * len(active)

    def _arm(self) -> None:
        if not self.jobs:
            self._next_t = float("inf")
            return
        left = self._left(self._active())
        t = self.env.now + left
        self._next_t = t
        self.env.timeout(left, t).callbacks.append(self._on_timer)  # type: ignore[union-attr]

    def _ended(self, done: list[list[Any]]) -> None:
        """Jobs `done` have ended (they are out of `jobs`; their events not yet triggered)."""

    def _no_job_ended(self, active: list[list[Any]]) -> None:
        """The timer fired and no job has ended (a time slice did)."""

    def _on_timer(self, ev: simpy.Event) -> None:
        if ev.value != self._next_t:
            return  # superseded by a later arrival
        self._drain()
        active = self._active()
        k = len(active)
        done = [j for j in active if j[0] * k <= _DONE_TOL_S]
        if done:
            ids = {id(j) for j in done}
            self.jobs = [j for j in self.jobs if id(j) not in ids]
            self._ended(done)
            for j in done:
                j[1].succeed()
        else:
            self._no_job_ended(active)
        self._arm()


class Processors:
    """The devices of the target cluster; one a single process uses runs its jobs as plain
    timeouts, a shared one is a SharedProcessor. Resources are numbered; a process's compute
    runs on `compute_res[p]`, its host-side work (codec calls) on `host_res[p]` (its CPU device,
    None beside a GPU: free in a target cluster), a shard's on `server_res[s]` (None)."""

    def __init__(self, env: simpy.Environment, scn: Scenario, place: Placement) -> None:
        self.env = env
        cpu = scn.cluster.workers.device == "cpu"
        self.names = [("cpu" if cpu else "gpu") + str(d) for d in range(place.n_devices)]
        self.compute_res: list[int | None] = list(place.device_of_proc)
        self.host_res: list[int | None] = [d if cpu else None for d in place.device_of_proc]
        self.server_res: list[int | None] = [None] * scn.cluster.servers.count
        self.n_cores = 0
        users = self.users()
        self.shared: list[SharedProcessor | None] = [
            SharedProcessor(env, self.names[r]) if len(users[r]) > 1 else None
            for r in range(len(self.names))
        ]

    def users(self) -> list[set[tuple[str, int]]]:
        """Which processes use each resource: with one user its jobs never overlap (plain
        timeouts)."""
        users: list[set[tuple[str, int]]] = [set() for _ in self.names]
        for p, (c, h) in enumerate(zip(self.compute_res, self.host_res, strict=True)):
            for r in (c, h):
                if r is not None:
                    users[r].add(("worker", p))
        for s, r in enumerate(self.server_res):
            if r is not None:
                users[r].add(("server", s))
        return users

    def run(
        self,
        res: int | None,
        work_s: float,
        priority: int = ORDINARY,
        after: simpy.Event | None = None,
        who: int | None = None,
    ) -> simpy.Event:
        """An event that fires when `work_s` seconds of standalone work of class `priority`
        (ORDINARY, COMPUTE; see SharedProcessor) have been done on `res`. `after` (the job the
        same thread ran just before) and `who` (the process whose work it is) matter only to the
        host model (`pssim.sim.host.HostProcessors.run`)."""
        if work_s <= 0.0:
            return self.env.timeout(0.0)
        sp = self.shared[res] if res is not None else None
        if sp is None:
            return self.env.timeout(work_s)
        return sp.run(work_s, priority)

    def cpu_seconds(self) -> dict[str, float]:
        """CPU seconds per core, as psreal reports them: the host model's (none here)."""
        return {}

    def cpu_seconds_by_role(self) -> dict[str, float]:
        """CPU seconds per process, as psreal reports them: the host model's (none here)."""
        return {}
