"""The shard protocol (pssim.protocol.ShardProtocol) both backends execute, on hand-made message
sequences: bsp clocks, held pulls and their waits, one encoding per version, leaves."""

from __future__ import annotations

from pssim.protocol import HeldPull, ShardProtocol


def test_bsp_a_clock_completes_with_its_last_gradient_and_releases_the_held_pulls() -> None:
    sh = ShardProtocol("bsp", None, [0, 1], steps=2)
    assert sh.pull_ready(0) and not sh.pull_ready(1)
    assert sh.needs_encoding()
    sh.encoded()
    assert not sh.needs_encoding()
    sh.hold(0, 1, now_s=0.5)  # worker 0 pulls for step 1 before the clock is complete
    assert not sh.push(0, 0)  # summed, nothing due
    sh.count_applied()
    assert sh.release() == []
    assert sh.push(1, 0)  # the clock's last gradient: an update is due
    sh.count_applied()
    assert sh.release() == []  # ... and the pull waits for it
    sh.updated()
    assert sh.version == 1 and sh.needs_encoding()
    assert sh.release() == [HeldPull(0, 1, 0.5)]
    assert sh.held == [] and not sh.drained


def test_ssp_a_held_pull_is_released_when_the_slowest_clock_catches_up() -> None:
    sh = ShardProtocol("ssp", 1, [0, 1], steps=5)
    for step in range(2):  # worker 0 runs ahead: two gradients, applied on arrival
        assert not sh.push(0, step)
        sh.count_applied()
    assert sh.version == 2
    assert not sh.pull_ready(2)  # step 2 needs every clock >= 1; worker 1's is 0
    sh.hold(0, 2, now_s=1.0)
    sh.hold(1, 0, now_s=1.5)  # (ready, but held here to check the order kept)
    assert sh.held_ready()  # the earliest held pull, for step 0, is ready
    assert sh.release() == [HeldPull(1, 0, 1.5)]
    assert not sh.held_ready()
    sh.push(1, 0)
    sh.count_applied()
    assert sh.held_ready()
    assert sh.release() == [HeldPull(0, 2, 1.0)] and not sh.held_ready()


def test_asp_pulls_never_wait_and_every_push_is_a_version() -> None:
    sh = ShardProtocol("asp", None, [0, 1, 2], steps=1)
    assert all(sh.pull_ready(s) for s in range(100))
    for p in range(3):
        assert not sh.push(p, 0)
        sh.count_applied()
    assert sh.version == 3 and sh.drained


def test_a_leave_completes_the_clocks_waiting_for_it_and_lowers_what_is_expected() -> None:
    sh = ShardProtocol("bsp", None, [0, 1, 2], steps=4)
    assert sh.expected == 12
    for p in (0, 1):
        assert not sh.push(p, 0)
        sh.count_applied()
    # worker 2 crashes for good before pushing anything: clock 0 is complete without it
    assert sh.leave(2) == [0]
    assert sh.expected == 8
    sh.updated()
    assert sh.version == 1 and sh.pull_ready(1)
