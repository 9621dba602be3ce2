"""An exact, hand-checked event log of a tiny simulation (SimPy style: assert the times things
happen).

Scenario: 2 workers, 1 PS shard, BSP, a linear model 99 -> 10 (990 + 10 = 1000 float32 parameters,
4000 bytes, one shard, two partitions), `compute.step_time_s` = 10 ms, worker 1 a 1.5x straggler,
every NIC 0.008 Gbit/s = 1e6 bytes/s per direction with 100 us latency, `compute.profile: none` so
the host-side op costs come from the catalog `cpu` entry (10 GB/s x efficiency 0.5 = 5e9 bytes/s of
memory traffic; pssim/costs.py `_catalog_ops`). Every time below is worked out by hand in the
comments and the simulator must reproduce it to 1e-12 relative.

Per 1000-element shard (bytes touched per element / 5e9 bytes/s):
  worker_unpack   (wire 4 + model 4)            =  8 B -> 1.6 us
  worker_pack     (model 4 + wire 4)            =  8 B -> 1.6 us
  server_accumulate (decode 4+4, add 8)         = 16 B -> 3.2 us
  server_update   (param r/w 8 + grad 4)        = 12 B -> 2.4 us
  server_reply    (param 4 + wire 4)            =  8 B -> 1.6 us
Messages (pssim/wire.py): a pull request is the 64-byte header; a reply or a push is 64 + 4000 =
4064 B.
"""

from __future__ import annotations

import pytest

from pssim.costs import build_costs
from pssim.records import Records
from pssim.scenario import Scenario, scenario_from_dict
from pssim.sim import simulate

US = 1e-6


def _scenario() -> Scenario:
    nic = {"bandwidth_gbps": 0.008, "latency_us": 100}
    return scenario_from_dict(
        {
            "name": "eventlog",
            "model": {"kind": "linear", "input_dim": 99, "output_dim": 10},
            "training": {"batch_size": 8, "steps": 2, "warmup_steps": 0},
            "cluster": {"workers": {"count": 2, "nic": nic}, "servers": {"count": 1, "nic": nic}},
            "compute": {"step_time_s": 0.01, "profile": "none"},
            "sync": {"mode": "bsp"},
            "stragglers": {"slowdown": {1: 1.5}},
        }
    )


@pytest.fixture(scope="module")
def run() -> tuple[Scenario, Records]:
    scn = _scenario()
    rec, _ = simulate(scn)
    return scn, rec


def test_op_costs_are_the_ones_used_by_hand() -> None:
    costs = build_costs(_scenario())
    numels = [990, 10]
    assert costs.op("worker_unpack", numels) == pytest.approx(1.6 * US, rel=1e-12)
    assert costs.op("worker_pack", numels) == pytest.approx(1.6 * US, rel=1e-12)
    assert costs.op("server_accumulate", numels) == pytest.approx(3.2 * US, rel=1e-12)
    assert costs.op("server_update", numels) == pytest.approx(2.4 * US, rel=1e-12)
    assert costs.op("server_reply", numels) == pytest.approx(1.6 * US, rel=1e-12)
    assert costs.msg_overhead_s == 0.0


# Step 0, both workers start at t = 0.
#   pull requests: two 64 B flows into the server's ingress (1e6 B/s) share it, 5e5 B/s each:
#     64 / 5e5 = 128 us -> drained at 128 us, + 100 us latency -> at the server at 228 us.
#   server: PULL w0 is ready (version 0 >= step 0): reply cost 1.6 us -> 229.6 us, send to w0;
#     then (one message at a time) PULL w1 at 229.6 us: same version, already packed -> sent at
#     229.6 us too, a zero-length reply span.
#   replies: two 4064 B flows share the server's egress, 5e5 B/s each: 8128 us -> 8357.6 us,
#     + 100 us -> 8457.6 us; unpack 1.6 us -> pull_end = 8459.2 us for both.
#   compute: w0 10 ms -> 18459.2 us; w1 10 ms + straggle 5 ms -> 23459.2 us.
#   push w0: pack 1.6 us -> 18460.8 us; alone on every NIC, 1e6 B/s: 4064 us -> 22524.8 us,
#     + 100 us -> push_end = 22624.8 us. Server accumulates it: 3.2 us -> 22628.0 us.
#   push w1: pack -> 23460.8 us; alone: 4064 us -> 27524.8 us, + 100 us -> push_end = 27624.8 us.
#     Server accumulates: -> 27628.0 us; second gradient of clock 0: update 2.4 us -> 27630.4 us,
#     version 1.
# Step 1.
#   w0 pull at 22624.8 us: 64 B alone at 1e6 B/s = 64 us -> 22688.8, + 100 -> 22788.8 us at the
#     server; version 0 < 1: held from 22788.8 us until the update ends at 27630.4 us
#     (wait = 4841.6 us); reply cost 1.6 us -> 27632.0 us, reply to w0 starts, alone at 1e6 B/s.
#   w1 pull at 27624.8 us: 64 us -> 27688.8, + 100 -> 27788.8 us at the server; ready, already
#     packed: reply to w1 starts at 27788.8 us (wait 0).
#   w0's reply has moved 1e6 * (27788.8 - 27632.0) us = 156.8 B; 3907.2 B left. Both now share the
#     server egress at 5e5 B/s: w0 needs 7814.4 us -> 35603.2 us; meanwhile w1 moved 3907.2 B, so
#     156.8 B left, alone at 1e6 B/s: 156.8 us -> 35760.0 us.
#   w0: delivered 35703.2 us, unpack -> pull_end 35704.8 us; compute -> 45704.8 us; pack ->
#     45706.4 us; push alone 4064 us -> 49770.4, + 100 -> push_end 49870.4 us; server -> 49873.6 us.
#   w1: delivered 35860.0 us, unpack -> pull_end 35861.6 us; compute + straggle -> 50861.6 us;
#     pack -> 50863.2 us; push -> 54927.2, + 100 -> push_end 55027.2 us; server accumulates
#     -> 55030.4 us, update -> 55032.8 us (version 2). The run ends when the servers have applied
#     every gradient, so these last two are recorded as well.
EXPECTED_US = {
    # (worker, step): pull_start, pull_end, compute_start, compute_end, push_start, push_end, wait
    (0, 0): (0.0, 8459.2, 8459.2, 18459.2, 18459.2, 22624.8, 0.0),
    (1, 0): (0.0, 8459.2, 8459.2, 23459.2, 23459.2, 27624.8, 0.0),
    (0, 1): (22624.8, 35704.8, 35704.8, 45704.8, 45704.8, 49870.4, 4841.6),
    (1, 1): (27624.8, 35861.6, 35861.6, 50861.6, 50861.6, 55027.2, 0.0),
}
FIELDS = (
    "pull_start_s",
    "pull_end_s",
    "compute_start_s",
    "compute_end_s",
    "push_start_s",
    "push_end_s",
    "wait_s",
)


@pytest.mark.parametrize("key", sorted(EXPECTED_US))
def test_step_times_match_the_hand_log(run: tuple[Scenario, Records], key: tuple[int, int]) -> None:
    _, rec = run
    w, step = key
    got = [float(rec.times[f][w, step]) for f in FIELDS]
    want = [x * US for x in EXPECTED_US[key]]
    assert got == pytest.approx(want, rel=1e-12, abs=1e-15)


def test_gradients_arrive_and_apply_at_the_hand_times(run: tuple[Scenario, Records]) -> None:
    _, rec = run
    # (worker, step): arrival at the server, end of its accumulation, version read, version applied
    # to
    want = {
        (0, 0): (22624.8, 22628.0, 0, 0),
        (1, 0): (27624.8, 27628.0, 0, 0),
        (0, 1): (49870.4, 49873.6, 1, 1),
        (1, 1): (55027.2, 55030.4, 1, 1),
    }
    for (w, step), (arr, done, read, applied) in want.items():
        assert float(rec.grad_arrive_s[w, step, 0]) == pytest.approx(arr * US, rel=1e-12)
        assert float(rec.grad_done_s[w, step, 0]) == pytest.approx(done * US, rel=1e-12)
        assert int(rec.grad_read[w, step, 0]) == read
        assert int(rec.grad_applied[w, step, 0]) == applied
    assert (rec.staleness()[:, :, 0] == 0).all()


def test_server_spans_match_the_hand_log(run: tuple[Scenario, Records]) -> None:
    _, rec = run
    # (kind, start, end, bytes): 0 aggregate, 1 update, 2 reply (one span per reply sent)
    want = [
        (2, 228.0, 229.6, 4064),
        (2, 229.6, 229.6, 4064),
        (0, 22624.8, 22628.0, 0),
        (0, 27624.8, 27628.0, 0),
        (1, 27628.0, 27630.4, 0),
        (2, 27630.4, 27632.0, 4064),
        (2, 27788.8, 27788.8, 4064),
        (0, 49870.4, 49873.6, 0),
        (0, 55027.2, 55030.4, 0),
        (1, 55030.4, 55032.8, 0),
    ]
    got = sorted((k, a, b, n) for s, k, a, b, n in rec.spans if s == 0)
    assert len(got) == len(want)
    for g, w in zip(
        sorted(got, key=lambda x: (x[1], x[0])),
        sorted(want, key=lambda x: (x[1], x[0])),
        strict=True,
    ):
        assert g[0] == w[0] and g[3] == w[3]
        assert g[1:3] == pytest.approx((w[1] * US, w[2] * US), rel=1e-12, abs=1e-15)


def test_simulated_time_is_when_the_last_worker_finished() -> None:
    # DESIGN/metrics: simulated_time_s is the SimPy time the last worker process finished (its
    # last push delivered), even though the shard still applies that gradient afterwards
    _, extra = simulate(_scenario())
    assert extra["simulated_time_s"] == pytest.approx(55027.2 * US, rel=1e-12)


def test_bytes_sent_per_step(run: tuple[Scenario, Records]) -> None:
    _, rec = run
    # a worker step sends one 64 B pull request and one 4064 B push
    assert (rec.bytes_sent == 64 + 4064).all()
    assert (rec.samples == 8).all()
