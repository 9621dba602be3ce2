"""Hung peers and how a real run ends (DESIGN.md section 5): a role that stops responding is
named by its heartbeat within `--heartbeat-timeout`, a run whose workers all crashed for good
fails, bad durations are refused before anything runs, and SIGTERM stops every process.

The real runs reuse tests/test_real_robustness.py's helpers: `psreal run` as a child process in
its own session, with a marker in its environment that every process of the run inherits, so
that `leftover_processes` can assert that none outlives the run. A role process is found by its
name (/proc/PID/comm, "psreal w1 r4" for worker process 1, rank 4: psreal.launch.name_process).
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest
from test_real_robustness import (
    HANG_AT_2,
    _assert_no_results,
    _interrupt_run,
    _run_failing,
)

from psreal.cli import main
from pssim.scenario import resolved_yaml

HEARTBEAT_S = 3.0


def _pid_named(marker: str, name: str, leftover: Any) -> int:
    """The pid of the run's process called `name` (/proc/PID/comm)."""
    for pid, _ in leftover(f"PSREAL_TEST_MARK={marker}"):
        try:
            if Path(f"/proc/{pid}/comm").read_text().strip() == name:
                return pid
        except OSError:
            continue
    raise AssertionError(f"no process named {name!r} in the run")


@pytest.fixture
def scenario_file(tiny_scenario: Any, tmp_path: Path) -> Path:
    f = tmp_path / "tiny.yaml"
    f.write_text(resolved_yaml(tiny_scenario("training.steps=8")), encoding="utf-8")
    return f


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_a_worker_stopped_with_sigstop_is_named_within_the_heartbeat_timeout(
    scenario_file: Path, tmp_path: Path, leftover_processes: Any
) -> None:
    def stop_worker_1(_: subprocess.Popen, marker: str) -> None:
        os.kill(_pid_named(marker, "psreal w1 r4", leftover_processes), signal.SIGSTOP)

    # worker 1's main thread sleeps at step 2 (its heartbeat thread goes on): the run is surely
    # under way, every control connection up, when SIGSTOP freezes the whole process
    code, rest, took = _interrupt_run(
        scenario_file,
        tmp_path,
        leftover_processes,
        "worker:1:step:2:hang",
        stop_worker_1,
        "--heartbeat-timeout",
        str(HEARTBEAT_S),
    )
    assert code == 1, rest
    assert (
        "error: worker 1 (rank 4) stopped responding: no heartbeat for 3." in rest
        and "(last step 2 of 8; psreal run --heartbeat-timeout)" in rest
    ), rest
    assert "coordinator (rank 0)" not in rest, rest
    # heartbeat timeout, at most one check interval, the diagnosis grace and stopping the others
    assert took < HEARTBEAT_S + 5.0, (took, rest)
    print(f"\nSIGSTOP to exit: {took:.2f} s (heartbeat timeout {HEARTBEAT_S} s)")


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_every_worker_crashing_for_good_fails_the_run(
    tiny_scenario: Any, tmp_path: Path, leftover_processes: Any
) -> None:
    f = tmp_path / "tiny.yaml"
    scn = tiny_scenario(
        "training.steps=6", "faults=[{at_step: 2, worker: 0}, {at_step: 3, worker: 1}]"
    )
    f.write_text(resolved_yaml(scn), encoding="utf-8")
    proc = _run_failing(f, tmp_path / "out", None, leftover_processes)
    assert proc.returncode == 1, proc.stderr
    assert (
        "error: every worker crashed for good (scenario faults: worker 0 at step 2, "
        "worker 1 at step 3)" in proc.stderr
    ), proc.stderr
    _assert_no_results(tmp_path / "out")


@pytest.mark.parametrize("option", ["--timeout", "--stall-timeout", "--heartbeat-timeout"])
@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "-1", "0", "-0.0"])
def test_bad_durations_are_refused_before_anything_runs(
    option: str, value: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    # the scenario file does not exist: the option is refused before it is read
    # OPTION=VALUE: argparse would take a separate "-inf" for an option of its own
    code = main(["run", str(tmp_path / "missing.yaml"), "--out", str(out), f"{option}={value}"])
    err = capsys.readouterr().err
    shown = {"-inf": "-inf", "-1": "-1", "0": "0", "-0.0": "-0"}.get(value, value)
    assert code == 2
    assert err == f"error: {option}: must be a positive number of seconds (got {shown})\n"
    assert not out.exists()


def test_a_good_duration_is_taken(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["run", str(tmp_path / "missing.yaml"), "--heartbeat-timeout", "0.5"])
    assert code == 2  # the missing file, not the option
    assert "--heartbeat-timeout" not in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_sigterm_stops_every_process_with_exit_code_143(
    scenario_file: Path, tmp_path: Path, leftover_processes: Any
) -> None:
    def sigterm(proc: subprocess.Popen, _: str) -> None:  # psreal alone, as systemd sends it
        os.kill(proc.pid, signal.SIGTERM)

    code, rest, _ = _interrupt_run(scenario_file, tmp_path, leftover_processes, HANG_AT_2, sigterm)
    assert code == 143, rest
    assert [ln for ln in rest.splitlines() if ln.startswith("error:")] == [
        "error: terminated (SIGTERM)"
    ], rest
