"""The target cluster's network (pssim.sim.resources.Network) at the edges of the clock."""

from __future__ import annotations

import simpy

from pssim.layout import LinkLayout
from pssim.sim.resources import Network


def test_a_reply_to_a_message_delivered_late_in_a_long_run_is_delivered_too() -> None:
    # at t = 3e4 s a latency of 1e-13 s does not move the clock: a message delivered then, whose
    # receiver answers at once with an empty message (done the same instant), must see its
    # answer delivered too (the answer once joined a delivery list already handed over: lost)
    layout = LinkLayout([1e9] * 4, ["w0.e", "w0.i", "s0.e", "s0.i"], 1, None, 1e-13, 1e-13)
    env = simpy.Environment(initial_time=3e4)
    net = Network(env, layout)
    got: list[str] = []

    def answer(msg: tuple) -> None:
        got.append(msg[2])
        if msg[2] == "request":
            net.send(net.resources(1, 0), 0.0, (net.delay_w2s, answer, "reply"))

    net.send(net.resources(0, 1), 1000.0, (net.delay_w2s, answer, "request"))
    env.run()
    assert got == ["request", "reply"]
