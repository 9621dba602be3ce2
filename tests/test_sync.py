"""pssim.sync.ShardSync: the one sync rule both backends' shards run (DESIGN.md section 4)."""

from __future__ import annotations

from pssim.sync import ShardSync


def test_bsp_clock_completes_with_every_pusher_and_leave_completes_a_waiting_clock() -> None:
    s = ShardSync("bsp", None, [0, 1, 2])
    assert not s.push(0, 0) and not s.push(1, 0)
    assert not s.ready(1)
    assert s.push(2, 0)  # the third gradient of clock 0 completes it
    s.updated()
    assert s.version == 1 and s.ready(1)
    assert not s.push(0, 1) and not s.push(1, 1)  # clock 1 waits for pusher 2 ...
    assert s.leave(2) == (1, [1])  # ... which leaves after 1 gradient: clock 1 is complete now
    s.updated()
    assert s.needed(2) == 2  # later clocks need the two still in


def test_a_pusher_that_left_after_pushing_a_clock_still_counts_for_it() -> None:
    s = ShardSync("bsp", None, [0, 1])
    assert not s.push(0, 0) and not s.push(0, 1)  # pusher 0 is ahead: clocks 0 and 1
    assert s.leave(0) == (2, [])  # it leaves having pushed both
    assert s.needed(0) == 2 and s.needed(1) == 2 and s.needed(2) == 1
    assert s.push(1, 0) and s.push(1, 1)


def test_ssp_waits_for_the_slowest_clock_and_stops_waiting_for_one_that_left() -> None:
    s = ShardSync("ssp", 1, [0, 1])
    for _ in range(3):
        s.push(0, 0)
    assert s.version == 3 and s.min_clock == 0
    assert s.ready(1) and not s.ready(2)  # pull for step 2 needs every clock >= 1
    s.push(1, 0)
    assert s.min_clock == 1 and s.ready(2)
    assert s.leave(1) == (1, [])
    assert s.min_clock == 3 and s.ready(4) and not s.ready(5)


def test_asp_applies_on_arrival_and_never_holds_a_pull() -> None:
    s = ShardSync("asp", None, [0, 1])
    assert not s.push(1, 5)
    assert s.version == 1 and s.ready(10**6)


def test_one_pusher_completes_each_bsp_clock_alone() -> None:
    s = ShardSync("bsp", None, [0])
    for step in range(3):
        assert s.push(0, step)
        s.updated()
    assert s.version == 3 and not s.bsp_count


def test_held_pulls_split_into_those_now_allowed_and_the_rest() -> None:
    s = ShardSync("ssp", 0, [0, 1])
    held = [(0, 1, 0.5), (1, 2, 0.7)]
    assert s.split_ready(held) == ([], held)
    s.push(0, 0)
    s.push(1, 0)  # every clock is 1: a pull for step 1 may go, step 2 still waits
    assert s.split_ready(held) == ([(0, 1, 0.5)], [(1, 2, 0.7)])
