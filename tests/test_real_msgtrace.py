"""psreal's opt-in message trace (PSREAL_MSG_TRACE) and the script that reads it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pssim import wire
from pssim.scenario import resolved_yaml

ROOT = Path(__file__).resolve().parents[1]


def test_a_traced_run_records_every_message_and_the_script_reads_it(
    tiny_scenario: Any, tmp_path: Path
) -> None:
    pytest.importorskip("torch")
    scn = tiny_scenario("training.steps=6")
    f = tmp_path / "tiny.yaml"
    f.write_text(resolved_yaml(scn), encoding="utf-8")
    trace = tmp_path / "trace"
    env = {**os.environ, "PSREAL_MSG_TRACE": str(trace)}
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "psreal.cli",
            "run",
            str(f),
            "--out",
            str(tmp_path / "out"),
            "--quiet",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    W, S, T = scn.cluster.workers.count, scn.cluster.servers.count, scn.training.steps
    roles = {p.stem: json.loads(p.read_text()) for p in trace.glob("rank*.json")}
    assert len(roles) == W + S
    sends = [e for events in roles.values() for e in events if e[1] == "send"]
    pushes = [e for e in sends if e[5] == wire.PUSH]
    assert len(pushes) == W * S * T  # every worker pushes to every shard each step
    delivered = {(e[2], e[3]) for events in roles.values() for e in events if e[1] == "deliver"}
    assert {(e[2], e[3]) for e in sends if e[5] in (wire.PULL, wire.PUSH, wire.REPLY)} <= delivered
    arbiter = json.loads((trace / "arbiter.json").read_text())
    done = {(e[2], e[3]) for e in arbiter if e[1] == "done"}
    assert {(e[2], e[3]) for e in pushes} <= done  # app emulation: the arbiter delivered each one
    out = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "msg_latency.py"), str(trace)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert "push:" in out.stdout and "notice - due" in out.stdout and "pull request:" in out.stdout


def test_without_the_variable_nothing_is_recorded() -> None:
    from psreal import msgtrace

    if msgtrace.ENABLED:
        pytest.skip("PSREAL_MSG_TRACE is set for this test session")
    before = len(msgtrace.EVENTS)
    msgtrace.mark("send", 0, 1, 2, 3, 4)
    msgtrace.dump("never")
    assert len(msgtrace.EVENTS) == before
