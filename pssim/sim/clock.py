"""The one place the simulator reaches into SimPy's private attributes (SimPy 4.1).

SimPy's public API has no way to schedule an event to run after every ordinary event of the
current instant, nor to ask how many events a run scheduled. Both are needed: the link model
recomputes its fair shares once per instant, after every message that starts in it
(`at_end_of_instant`), and summary.json reports the events a run took (`scheduled_events`).
Everything else uses the public API (`env.now`, `Event.value`, `Event.succeed`).
"""

from __future__ import annotations

from collections.abc import Callable

import simpy
from simpy.core import NORMAL

# SimPy runs events due at one time in (priority, scheduling order); ordinary events have
# priority NORMAL (1). An event with a larger number runs after every ordinary event of its
# instant, including ones scheduled while that instant is being processed.
END_OF_INSTANT = NORMAL + 1


def at_end_of_instant(env: simpy.Environment, fn: Callable[[simpy.Event], None]) -> None:
    """Run `fn` once every ordinary event due now has run."""
    ev = simpy.Event(env)
    ev._ok = True  # a triggered event carrying no value, like a Timeout(0), but scheduled late
    ev._value = None
    ev.callbacks.append(fn)  # type: ignore[union-attr]
    env.schedule(ev, END_OF_INSTANT)


def scheduled_events(env: simpy.Environment) -> int:
    """How many events `env` has scheduled so far (SimPy's running event id); call it once, at
    the end of a run, since reading it takes an id."""
    return next(env._eid)
