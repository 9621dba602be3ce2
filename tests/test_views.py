"""The two views of section 9 of the design: the target cluster the scenario describes (`pssim
simulate`, `sweep`, `plan`) and psreal's run of it on this machine (`simulate --here`, `compare`).

In the target view nothing of the machine that runs pssim enters: a profile gives only what it
measured of the device (compute per step and its variation, the host ops' cost per element).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import simpy

from pssim.cli import main
from pssim.costs import HERE, OPS, TARGET, build_costs, device_costs
from pssim.layout import placement
from pssim.profile import LinearCost, Profile, load_profile, profile_key
from pssim.runplan import derive
from pssim.scenario import load_scenario
from pssim.sim import build_resources, simulate
from pssim.sim.host import HostNetwork, HostProcessors
from pssim.sim.resources import Network, Processors

QUICKSTART = Path(__file__).resolve().parents[1] / "scenarios" / "quickstart.yaml"
# the what-if of the redesign issue: 100 Gbit/s NICs, no emulation
WHAT_IF = [
    "cluster.workers.nic.bandwidth_gbps=100",
    "cluster.servers.nic.bandwidth_gbps=100",
    "cluster.network.emulation=none",
    "training.steps=12",
    "training.warmup_steps=2",
]
HOST_OPS = ("msg_send", "msg_recv", "msg_send_server", "msg_recv_server", "arbiter")


def _profile(device_name: str = "cpu") -> Profile:
    """A profile as psreal profile writes one on a 2-core host: device costs and a host model."""
    ops = {k: LinearCost(a=3e-5, p=1e-5, b=2e-9) for k in OPS}
    ops.update({k: LinearCost(a=2e-4, b=1e-10) for k in HOST_OPS})
    return Profile(
        key={},
        host="test-host",
        device_name=device_name,
        cores=2,
        gpus=None if device_name == "cpu" else 1,
        step_compute_s=2.5e-3,
        compute_samples_s=[2.4e-3, 2.5e-3, 2.7e-3, 2.3e-3],
        ops=ops,
        msg_overhead_s=1.5e-4,
        transport_bytes_per_s=2e9,
        cpu_slice_s=1.5e-3,
        arbiter_pass_s=[(5e-5, 6e-5), (1.0, 3e-4)],
    )


@pytest.fixture
def profile_path(tmp_path: Path) -> Path:
    p = tmp_path / "profile.json"
    p.write_text(_profile().model_dump_json())
    return p


def _quickstart(*sets: str):  # noqa: ANN202 - Scenario
    return load_scenario(str(QUICKSTART), [*WHAT_IF, *sets])


def test_the_target_view_of_the_what_if_has_no_host_model_component(
    profile_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scn = _quickstart(f"compute.profile={profile_path}")
    costs = build_costs(scn)
    assert costs.view == TARGET and costs.host_model() is None
    assert costs.cores is None and costs.gpus is None and costs.cpu_slice_s == 0.0
    assert costs.msg_overhead_s == 0.0 and costs.transport_bytes_per_s is None
    assert costs.arbiter_pass_s == () and not set(HOST_OPS) & set(costs.ops)
    # what the profile measured of the device does enter, and the summary names it
    assert costs.compute_s == 2.5e-3 and costs.compute_samples_s
    assert all(costs.ops[k] == LinearCost(b=2e-9) for k in OPS)
    made: list[tuple[type, type]] = []
    real = build_resources

    def spy(*a, **kw):  # noqa: ANN002, ANN003, ANN202
        net, procs = real(*a, **kw)
        made.append((type(net), type(procs)))
        return net, procs

    monkeypatch.setattr("pssim.sim.build_resources", spy)
    _, extra = simulate(scn, costs)
    assert made == [(Network, Processors)]  # no host subclass: no core, slice, message CPU,
    assert extra["view"] == TARGET and extra["host_model"] is None  # cap or arbiter
    assert extra["cpu_seconds"] == {} and extra["cpu_seconds_by_role"] == {}
    assert extra["cost_sources"] == {
        "compute": f"profile:{profile_path}",
        "host_ops": f"profile:{profile_path} (cost per element)",
    }


def test_with_a_profile_the_target_view_differs_only_by_the_devices_costs(
    profile_path: Path,
) -> None:
    with_profile, _ = simulate(_quickstart(f"compute.profile={profile_path}"))
    scn = _quickstart("compute.profile=none")
    prof = load_profile(profile_path)
    by_hand = dataclasses.replace(
        build_costs(scn),
        compute_s=prof.step_compute_s,
        stage_fwd_s=tuple(prof.stage_fwd_s),
        stage_bwd_s=tuple(prof.stage_bwd_s),
        compute_samples_s=tuple(prof.compute_samples_s),
        ops={**build_costs(scn).ops, **device_costs(prof)},
    )
    without, _ = simulate(scn, by_hand)
    for k, v in with_profile.times.items():
        np.testing.assert_array_equal(v, without.times[k])


def test_the_here_view_adds_the_profiles_host_model(profile_path: Path) -> None:
    scn = _quickstart(f"compute.profile={profile_path}")
    costs = build_costs(scn, view=HERE)
    assert costs.host_model() == {
        "cores": 2,
        "gpus": None,
        "cpu_slice_s": 1.5e-3,
        "per_message_cpu": sorted(HOST_OPS),
        "msg_overhead_s": 1.5e-4,
        "transport_cap_bytes_per_s": 2e9,
        "arbiter": True,
    }
    net, procs = build_resources(simpy.Environment(), derive(scn), costs, placement(scn, 2))
    assert isinstance(net, HostNetwork) and isinstance(procs, HostProcessors)
    _, extra = simulate(scn, costs)
    assert extra["view"] == HERE and extra["cpu_seconds"]["core0"] > 0
    assert extra["cost_sources"]["host_ops"] == f"profile:{profile_path}"


def test_the_target_view_takes_no_profile_of_another_device(tmp_path: Path) -> None:
    path = tmp_path / "h100.json"
    path.write_text(_profile("NVIDIA H100 80GB HBM3").model_dump_json())
    sets = [f"compute.profile={path}", "cluster.workers.device=cuda"]
    other = build_costs(_quickstart(*sets, "cluster.workers.gpu=A100-80GB"))
    assert other.source == "roofline:A100-80GB" and "not the scenario's" in other.notes[0]
    same = build_costs(_quickstart(*sets, "cluster.workers.gpu=H100-SXM"))
    assert same.source == f"profile:{path}"
    # the run here measured that GPU: the here view takes the profile whatever the scenario names
    here = build_costs(_quickstart(*sets, "cluster.workers.gpu=A100-80GB"), view=HERE)
    assert here.source == f"profile:{path}" and here.gpus == 1


def test_the_profile_key_includes_the_link_emulation() -> None:
    app, kernel = (
        profile_key(_quickstart(f"cluster.network.emulation={e}")) for e in ("app", "kernel")
    )
    assert app["emulation"] == "app" and kernel["emulation"] == "kernel"


def test_simulate_writes_its_view_and_here_asks_for_this_host(
    profile_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["simulate", str(QUICKSTART), *(f"--set={s}" for s in WHAT_IF)]
    args += [f"--set=compute.profile={profile_path}"]
    for extra, view in (([], "target"), (["--here"], "here")):
        out = tmp_path / view
        assert main([*args, "--out", str(out), *extra]) == 0
        summary = json.loads((out / "quickstart" / "sim" / "summary.json").read_text())
        assert summary["view"] == view
        assert (summary["host_model"] is None) == (view == "target")
        printed = capsys.readouterr().out
        assert "view" in printed and "compute from" in printed
        assert ("host model" in printed) == (view == "here")
