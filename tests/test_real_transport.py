"""What psreal puts on the wire, and how its transport and control plane behave.

- psreal/codec.py produces exactly the payload sizes `pssim.wire.push_payload_bytes` predicts (so
  simulated and measured bytes agree by construction), `decode(encode(x))` is exact for a float32
  wire without compression, within the wire dtype's rounding for float16/bfloat16, within half a
  quantisation step (max|x| / 127 / 2 per partition) for int8, and top-k keeps exactly the k
  largest magnitudes of every partition (k = `pssim.wire.topk_k`);
- the failure-handling helpers: the PSREAL_FAULT hook's syntax, which errors count as a peer's loss;
- `gather_params` reassembles a model from shard slices under every sharding policy;
- two processes exchange messages over psreal's Transport, with and without the app link arbiter,
  intact, in order, with the header fields and byte counts of pssim.wire (slow: spawns processes).
"""

from __future__ import annotations

import datetime
import socket
from typing import Any

import pytest
import torch
import torch.multiprocessing as mp
from hypothesis import given, settings
from hypothesis import strategies as st

from psreal.codec import decode_push, encode_dense, encode_push
from psreal.roles import parse_faults
from psreal.transport import PeerLost, is_peer_loss, short_error
from pssim import wire
from pssim.sharding import plan_shards
from pssim.workload import build_workload

WIRE = ["float32", "float16", "bfloat16"]
KINDS = ["none", "topk", "int8"]
TORCH = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def _parts(sizes: list[int], seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(n, generator=g) * (i + 1) for i, n in enumerate(sizes)]


# ------------------------------------------------------------------------------- codec
@settings(max_examples=60, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 300), min_size=1, max_size=5),
    wire_dtype=st.sampled_from(WIRE),
    kind=st.sampled_from(KINDS),
    ratio=st.floats(0.001, 1.0),
)
def test_encoded_push_has_the_size_pssim_wire_predicts(
    sizes: list[int], wire_dtype: str, kind: str, ratio: float
) -> None:
    payload = encode_push(_parts(sizes), wire_dtype, kind, ratio)
    assert payload.dtype == torch.uint8 and payload.dim() == 1
    assert payload.numel() == wire.push_payload_bytes(sizes, wire_dtype, kind, ratio)


@pytest.mark.parametrize("wire_dtype", WIRE)
def test_dense_payloads_have_the_size_pssim_wire_predicts(wire_dtype: str) -> None:
    x = torch.randn(1001)
    assert encode_dense(x, wire_dtype).numel() == wire.dense_payload_bytes(1001, wire_dtype)


def test_float32_without_compression_round_trips_exactly() -> None:
    parts = _parts([7, 130, 1])
    out = decode_push(
        encode_push(parts, "float32", "none", 1.0), [7, 130, 1], "float32", "none", 1.0
    )
    assert torch.equal(out, torch.cat(parts))


@pytest.mark.parametrize("wire_dtype", ["float16", "bfloat16"])
def test_half_precision_wire_rounds_once_to_the_wire_dtype(wire_dtype: str) -> None:
    parts = _parts([5, 64, 33])
    out = decode_push(
        encode_push(parts, wire_dtype, "none", 1.0), [5, 64, 33], wire_dtype, "none", 1.0
    )
    x = torch.cat(parts)
    assert torch.equal(out, x.to(TORCH[wire_dtype]).float())  # exactly one rounding, nothing else
    torch.testing.assert_close(out, x, rtol=1e-2 if wire_dtype == "bfloat16" else 1e-3, atol=1e-3)


@pytest.mark.parametrize("wire_dtype", WIRE)
def test_int8_is_within_half_a_quantisation_step_per_partition(wire_dtype: str) -> None:
    sizes = [3, 50, 129, 1]  # odd sizes: later partitions start at unaligned byte offsets
    parts = _parts(sizes)
    out = decode_push(encode_push(parts, wire_dtype, "int8", 1.0), sizes, wire_dtype, "int8", 1.0)
    pos = 0
    for p in parts:
        step = float(p.abs().max()) / 127.0
        err = (out[pos : pos + p.numel()] - p).abs().max()
        assert float(err) <= step / 2 * (1 + 1e-5)
        pos += p.numel()


@pytest.mark.parametrize("wire_dtype", WIRE)
@pytest.mark.parametrize("ratio", [0.01, 0.1, 0.5, 1.0])
def test_topk_keeps_the_k_largest_magnitudes_of_every_partition(
    wire_dtype: str, ratio: float
) -> None:
    sizes = [9, 200, 77, 2]
    g = torch.Generator().manual_seed(3)
    # distinct magnitudes, so "the k largest" is one set
    parts = [
        (torch.randperm(n, generator=g).float() + 1) * torch.sign(torch.randn(n, generator=g))
        for n in sizes
    ]
    out = decode_push(
        encode_push(parts, wire_dtype, "topk", ratio), sizes, wire_dtype, "topk", ratio
    )
    pos = 0
    for p in parts:
        k = wire.topk_k(p.numel(), ratio)
        dec = out[pos : pos + p.numel()]
        kept = set(torch.nonzero(dec).flatten().tolist())
        assert kept == set(torch.topk(p.abs(), k).indices.tolist())
        idx = sorted(kept)
        assert torch.equal(dec[idx], p[idx].to(TORCH[wire_dtype]).float())
        pos += p.numel()


@settings(max_examples=40, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 200), min_size=1, max_size=6),
    wire_dtype=st.sampled_from(WIRE),
    ratio=st.floats(0.01, 1.0),
)
def test_topk_decodes_at_any_alignment(sizes: list[int], wire_dtype: str, ratio: float) -> None:
    parts = _parts(sizes, seed=len(sizes))
    out = decode_push(
        encode_push(parts, wire_dtype, "topk", ratio), sizes, wire_dtype, "topk", ratio
    )
    assert out.numel() == sum(sizes)
    assert int((out != 0).sum()) <= sum(wire.topk_k(n, ratio) for n in sizes)


# -------------------------------------------------------------------- failure helpers
def test_fault_hook_syntax() -> None:
    assert parse_faults("worker:1:step:3:kill, server:0:step:2:raise") == [
        ("worker", 1, 3, "kill"),
        ("server", 0, 2, "raise"),
    ]
    for bad in ("worker:1:3:kill", "coordinator:0:step:1:raise", "worker:1:step:3:explode"):
        with pytest.raises(ValueError, match="PSREAL_FAULT"):
            parse_faults(bad)


def test_peer_loss_is_told_apart_from_a_cause() -> None:
    gloo = RuntimeError(
        "[/x/gloo/transport/tcp/pair.cc:553] Connection closed by peer [127.0.0.1]:1234. "
        "This is typically caused by a remote worker crashing. GLHF!"
    )
    assert (
        is_peer_loss(gloo) and is_peer_loss(PeerLost("x")) and is_peer_loss(ConnectionResetError())
    )
    assert not is_peer_loss(RuntimeError("shape mismatch")) and not is_peer_loss(
        TimeoutError("late")
    )
    assert short_error(gloo) == "Connection closed by peer [127.0.0.1]:1234"


# ---------------------------------------------------------------------- gather_params
@pytest.mark.parametrize("policy", ["range", "round_robin", "greedy_bytes"])
@pytest.mark.parametrize("stages", [1, 2])
def test_gather_params_reassembles_the_model_from_shard_slices(
    tiny_scenario: Any, policy: str, stages: int
) -> None:
    from psreal.launch import gather_params
    from pssim.runplan import derive

    scn = tiny_scenario(
        f"sharding.policy={policy}",
        "sharding.partition_bytes=100",
        "cluster.servers.count=3",
        "model.hidden=[12, 10]",
        f"pipeline.stages={stages}",
    )
    specs = build_workload(scn.model).params
    truth = [torch.randn(q.numel) for q in specs]
    plan = plan_shards(scn)
    bounds = derive(scn).bounds
    results = []
    for s in range(scn.cluster.servers.count):  # what each server's final_params() returns
        per_stage = {}
        for k, (a, b) in enumerate(bounds):
            parts = [q for q in plan.shards[s] if a <= q.unit < b]
            if parts:
                per_stage[k] = torch.cat(
                    [truth[q.param][q.offset : q.offset + q.numel] for q in parts]
                )
        results.append({"rank": 1 + s, "params": per_stage})
    got = gather_params(scn, results)
    assert list(got) == [q.name for q in specs]
    for q, t in zip(specs, truth, strict=True):
        assert torch.equal(got[q.name], t.view(q.shape))


# ------------------------------------------------------------------------ control plane
def _one_worker_one_server(gbps: float = 10.0) -> Any:
    from pssim.layout import link_layout
    from pssim.scenario import scenario_from_dict

    nic = {"bandwidth_gbps": gbps, "latency_us": 0}
    scn = scenario_from_dict(
        {
            "name": "t",
            "model": {"kind": "linear", "input_dim": 4, "output_dim": 2},
            "cluster": {"workers": {"count": 1, "nic": nic}, "servers": {"count": 1, "nic": nic}},
        }
    )
    return link_layout(scn, 1)


def test_a_delivery_for_an_endpoint_not_yet_connected_is_held_not_dropped() -> None:
    from psreal.control import ControlClient, ControlServer

    server = ControlServer(_one_worker_one_server())
    server.start()
    try:
        sender = ControlClient(server.addr, 1, 0)
        sender.start_flow(1, 1, 1000)  # to endpoint 1, which has not said HELLO yet
        sender.wait_done(0, 1, 10.0)  # delivered (at the sender's end)
        late = ControlClient(server.addr, 2, 1)
        late.wait_done(0, 1, 10.0)  # the receiver's DONE waited for its HELLO
    finally:
        server.stop()


def test_on_done_calls_back_in_delivery_order_whether_registered_before_or_after() -> None:
    import threading

    from psreal.control import ControlClient, ControlServer

    server = ControlServer(_one_worker_one_server(gbps=0.08))  # 10 MB/s: 100 kB take 10 ms
    server.start()
    try:
        a, b = ControlClient(server.addr, 1, 0), ControlClient(server.addr, 2, 1)
        got: list[int] = []
        all_in = threading.Event()

        def note(seq: int) -> None:
            got.append(seq)
            if len(got) == 3:
                all_in.set()

        b.on_done(0, 1, lambda: note(1))
        for seq, n in ((1, 100_000), (2, 50_000), (3, 200_000)):
            a.start_flow(1, seq, n)
        a.wait_done(0, 3, 10.0)  # all three delivered by now
        b.on_done(0, 2, lambda: note(2))  # registered after delivery: called at once
        b.on_done(0, 3, lambda: note(3))
        assert all_in.wait(10.0)
        assert sorted(got) == [1, 2, 3] and got[0] == 1
    finally:
        server.stop()


def test_the_arbiter_keeps_its_connections_when_it_outgrows_select(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # select(2) gives the arbiter microsecond timeouts but only watches descriptors below
    # FD_SETSIZE; past the limit the loop moves to the default selector and goes on serving
    import selectors

    import psreal.control as control

    monkeypatch.setattr(control, "_SELECT_FD_LIMIT", 0)  # every descriptor counts as past it
    server = control.ControlServer(_one_worker_one_server())
    assert isinstance(server.sel, selectors.SelectSelector)
    server.start()
    try:
        a, b = control.ControlClient(server.addr, 1, 0), control.ControlClient(server.addr, 2, 1)
        a.start_flow(1, 1, 1000)
        a.wait_done(0, 1, 10.0)
        b.wait_done(0, 1, 10.0)
        assert not isinstance(server.sel, selectors.SelectSelector)
        assert len(server.sel.get_map()) == 3  # the listening socket and both roles
    finally:
        server.stop()


# ----------------------------------------------------------------- two-process transport
SIZES = [0, 1, 13, 4096, 250_000, 3]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _peer(rank: int, port: int, ctl_addr: Any, emulate: bool, q: Any) -> None:
    import torch.distributed as dist

    from psreal.control import ControlClient
    from psreal.transport import Transport

    try:
        dist.init_process_group(
            "gloo",
            init_method=f"tcp://127.0.0.1:{port}",
            rank=rank,
            world_size=2,
            timeout=datetime.timedelta(seconds=60),
        )
        ctl = ControlClient(ctl_addr, rank, rank) if ctl_addr else None
        tr = Transport(rank, lambda ep: ep, ctl, emulate)  # endpoint == rank here
        if rank == 0:
            hs = [
                tr.send(
                    1,
                    wire.PUSH,
                    step=i,
                    version=10 + i,
                    payload=torch.arange(n, dtype=torch.int64).to(torch.uint8),
                    aux=n,
                    aux2=-i,
                )
                for i, n in enumerate(SIZES)
            ]
            for h in hs:
                h.wait()
            tr.stop(1)
            q.put(("sent", tr.bytes_sent))
        else:
            got: list[Any] = []
            tr.receive_from(0, got.append)
            tr.join(60)
            q.put(
                (
                    "got",
                    [
                        (
                            m.kind,
                            m.src,
                            m.step,
                            m.version,
                            m.aux,
                            m.aux2,
                            m.nbytes,
                            None if m.payload is None else m.payload.tolist(),
                        )
                        for m in got
                    ],
                )
            )
        dist.barrier()
        if ctl is not None:
            ctl.bye()
        dist.destroy_process_group()
    except BaseException as exc:  # noqa: BLE001
        q.put(("error", repr(exc)))


@pytest.mark.slow
@pytest.mark.timeout(120)
@pytest.mark.parametrize("emulate", [False, True])
def test_messages_arrive_intact_in_order_with_pssim_sizes(emulate: bool) -> None:
    from psreal.control import ControlServer
    from pssim.layout import link_layout
    from pssim.scenario import scenario_from_dict

    server = None
    addr = None
    if emulate:  # one worker (endpoint 0) and one server (endpoint 1), 10 Gbit/s links
        scn = scenario_from_dict(
            {
                "name": "t",
                "model": {"kind": "linear", "input_dim": 4, "output_dim": 2},
                "cluster": {
                    "workers": {"count": 1, "nic": {"bandwidth_gbps": 10.0}},
                    "servers": {"count": 1, "nic": {"bandwidth_gbps": 10.0}},
                },
            }
        )
        server = ControlServer(link_layout(scn, 1))
        server.start()
        addr = server.addr
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    port = _free_port()
    procs = [
        ctx.Process(target=_peer, args=(r, port, addr, emulate, q), daemon=True) for r in (0, 1)
    ]
    for p in procs:
        p.start()
    try:
        out = dict(q.get(timeout=90) for _ in procs)
    finally:
        for p in procs:
            p.join(10)
            if p.is_alive():
                p.kill()
        if server is not None:
            server.stop()
    assert "error" not in out, out.get("error")
    expect_bytes = [wire.message_bytes(n) for n in SIZES]
    assert out["sent"] == sum(expect_bytes)
    assert [m[:7] for m in out["got"]] == [
        (wire.PUSH, 0, i, 10 + i, n, -i, expect_bytes[i]) for i, n in enumerate(SIZES)
    ]
    for (*_, payload), n in zip(out["got"], SIZES, strict=True):
        assert payload == (None if n == 0 else [v % 256 for v in range(n)])
    if server is not None:
        assert server.flows_started == len(SIZES)  # every message went through the arbiter
