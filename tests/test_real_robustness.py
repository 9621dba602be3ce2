"""Failures of a real run (DESIGN.md section 5): every process ends, the cause is named, no half
results.

Failures are injected with psreal's testing hook `PSREAL_FAULT=ROLE:INDEX:step:N:ACTION`
(psreal/roles.py). Each test runs `psreal run` as a child process in its own session, with a
unique marker in its environment that every process of the run inherits, and asserts:

- the run ends within the test's timeout (subprocess timeout below) with the documented exit code:
  1 for a failure, 130 for Ctrl-C (SIGINT to the process group, as a terminal sends it);
- stderr names the failing role, its rank and the cause;
- afterwards no process carrying the marker is alive (no orphans);
- result files are atomic: a failed run leaves no OUT/<name>/real folder (nor a temporary one),
  and a complete folder from an earlier run stays as it was.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pssim.scenario import resolved_yaml

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

ROOT = Path(__file__).resolve().parents[1]
RUN_TIMEOUT_S = 90  # the whole failed run, start-up included, must end within this


def _env(marker: str, fault: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "PSREAL_FAULT")}
    env["PSREAL_TEST_MARK"] = marker
    if fault:
        env["PSREAL_FAULT"] = fault
    return env


@pytest.fixture
def scenario_file(tiny_scenario: Any, tmp_path: Path) -> Path:
    f = tmp_path / "tiny.yaml"
    f.write_text(resolved_yaml(tiny_scenario("training.steps=8")), encoding="utf-8")
    return f


def _cmd(file: Path, out: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "psreal.cli",
        "run",
        str(file),
        "--out",
        str(out),
        "--quiet",
        *extra,
    ]


def _assert_no_survivors(marker: str, leftover: Callable[[str], list[tuple[int, str]]]) -> None:
    deadline = time.monotonic() + 10.0  # the multiprocessing resource tracker exits just after
    while (alive := leftover(f"PSREAL_TEST_MARK={marker}")) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not alive, f"processes outlived the run: {alive}"


def _assert_no_results(out: Path) -> None:
    parent = out / "tiny"
    assert not (parent / "real").exists()
    if parent.exists():
        assert not list(parent.glob(".real*"))


def _run_failing(
    file: Path, out: Path, fault: str | None, leftover: Any, *extra: str
) -> subprocess.CompletedProcess:
    marker = uuid.uuid4().hex
    proc = subprocess.run(
        _cmd(file, out, *extra),
        cwd=ROOT,
        env=_env(marker, fault),
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        start_new_session=True,
    )
    _assert_no_survivors(marker, leftover)
    return proc


def test_a_worker_that_raises_fails_the_run_and_keeps_earlier_results(
    scenario_file: Path, tmp_path: Path, leftover_processes: Any
) -> None:
    out = tmp_path / "out"
    earlier = out / "tiny" / "real"
    earlier.mkdir(parents=True)
    (earlier / "summary.json").write_text('{"backend": "real", "earlier": true}\n')
    proc = _run_failing(scenario_file, out, "worker:1:step:3:raise", leftover_processes)
    assert proc.returncode == 1, proc.stderr
    assert (
        "error: worker 1 (rank 4): RuntimeError: fault injected by PSREAL_FAULT at step 3"
        in proc.stderr
    )
    # the root cause comes first, the peers that lost it after
    assert proc.stderr.index("error: worker 1 (rank 4)") < proc.stderr.index("note:")
    assert sorted(p.name for p in earlier.iterdir()) == ["summary.json"]
    assert (earlier / "summary.json").read_text() == '{"backend": "real", "earlier": true}\n'
    assert not list((out / "tiny").glob(".real*"))


def test_a_worker_killed_with_sigkill_fails_the_run(
    scenario_file: Path, tmp_path: Path, leftover_processes: Any
) -> None:
    proc = _run_failing(scenario_file, tmp_path / "out", "worker:1:step:3:kill", leftover_processes)
    assert proc.returncode == 1, proc.stderr
    assert "error: worker 1 (rank 4): killed by signal 9 (SIGKILL)" in proc.stderr
    _assert_no_results(tmp_path / "out")


def test_a_server_killed_with_sigkill_fails_the_run(
    scenario_file: Path, tmp_path: Path, leftover_processes: Any
) -> None:
    proc = _run_failing(scenario_file, tmp_path / "out", "server:1:step:2:kill", leftover_processes)
    assert proc.returncode == 1, proc.stderr
    assert "error: server 1 (rank 2): killed by signal 9 (SIGKILL)" in proc.stderr
    _assert_no_results(tmp_path / "out")


def test_a_hang_is_caught_by_the_stall_timeout(
    scenario_file: Path, tmp_path: Path, leftover_processes: Any
) -> None:
    proc = _run_failing(
        scenario_file,
        tmp_path / "out",
        "worker:0:step:2:hang",
        leftover_processes,
        "--stall-timeout",
        "3",
    )
    assert proc.returncode == 1, proc.stderr
    assert "error: no progress for 3 s" in proc.stderr
    assert "slowest: worker 0 (rank 3) at step 2" in proc.stderr
    _assert_no_results(tmp_path / "out")


HANG_AT_2 = "worker:0:step:2:hang"  # the run is surely under way when this fault fires


def _interrupt_run(
    file: Path,
    tmp_path: Path,
    leftover: Any,
    fault: str,
    send: Callable[[subprocess.Popen, str], None],
    *extra: str,
) -> tuple[int, str, float]:
    """Start `psreal run` (results into tmp_path/out) in its own session, with a fresh marker and
    the `fault` (ROLE:I:step:N:ACTION); once its stderr shows that the fault fired (the run is
    under way), call send(process, marker). Returns (exit code, the rest of stderr, seconds from
    send to the exit), having checked that no process outlived the run and that it wrote no
    results."""
    marker, out = uuid.uuid4().hex, tmp_path / "out"
    _, _, _, step, action = fault.split(":")
    proc = subprocess.Popen(
        _cmd(file, out, *extra),
        cwd=ROOT,
        env=_env(marker, fault),
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        seen = []
        assert proc.stderr is not None
        for text in proc.stderr:
            seen.append(text)
            if f"{action} at step {step}" in text:
                break
        else:
            pytest.fail(f"the run ended before the fault fired: {''.join(seen)}")
        send(proc, marker)
        sent = time.monotonic()
        rest = proc.stderr.read()
        code = proc.wait(timeout=60)
        took = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    _assert_no_survivors(marker, leftover)
    _assert_no_results(out)
    return code, rest, took


def test_ctrl_c_stops_every_process_with_exit_code_130(
    scenario_file: Path, tmp_path: Path, leftover_processes: Any
) -> None:
    def ctrl_c(proc: subprocess.Popen, _: str) -> None:  # a terminal's: the foreground group
        os.killpg(proc.pid, signal.SIGINT)

    code, rest, _ = _interrupt_run(scenario_file, tmp_path, leftover_processes, HANG_AT_2, ctrl_c)
    assert code == 130, rest
    assert "interrupted" in rest
