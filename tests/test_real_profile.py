"""psreal profile's in-situ calibration: each figure is the median over repeated calibration runs."""

from __future__ import annotations

from typing import Any

import pytest


def test_in_situ_figures_are_medians_over_the_calibration_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    import psreal.profiler as profiler

    runs = iter([
        {"compute_s": 3.0, "compute_samples_s": [3.0], "msg_worker_a": 5e-4, "msg_server_a": 1e-4, "arbiter_wake_s": 2e-4},
        {"compute_s": 1.0, "compute_samples_s": [1.0], "msg_worker_a": 1e-4, "msg_server_a": 9e-4, "arbiter_wake_s": 1e-4},
        {"compute_s": 2.0, "compute_samples_s": [2.0, 2.0], "msg_worker_a": 3e-4, "msg_server_a": 3e-4, "arbiter_wake_s": 9e-4},
    ])

    def once(*_args: Any) -> dict[str, Any]:
        return next(runs) | {"send_b": 1e-10, "recv_b": 2e-10, "samples": {}}

    monkeypatch.setattr(profiler, "_in_situ_once", once)
    got = profiler.measure_in_situ(None, "cpu", {}, {}, runs=3)  # type: ignore[arg-type]
    assert got["compute_s"] == 2.0 and got["compute_samples_s"] == [2.0, 2.0]  # the median run's steps
    assert got["msg_worker_a"] == pytest.approx(3e-4) and got["msg_server_a"] == pytest.approx(3e-4)
    assert got["arbiter_wake_s"] == pytest.approx(2e-4)
    assert (got["send_b"], got["recv_b"]) == (1e-10, 2e-10)
    assert len(got["samples"]["runs"]) == 3


def test_more_calibration_runs_join_the_earlier_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    import psreal.profiler as profiler

    def once(*_args: Any) -> dict[str, Any]:
        return {"compute_s": 10.0, "compute_samples_s": [10.0], "msg_worker_a": 1e-3, "msg_server_a": 1e-3,
                "send_b": 1e-10, "recv_b": 2e-10, "samples": {}}

    earlier = [{"compute_s": c, "compute_samples_s": [c], "msg_worker_a": 1e-4, "msg_server_a": 1e-4,
                "send_b": 1e-10, "recv_b": 2e-10, "samples": {}} for c in (1.0, 2.0, 3.0)]
    monkeypatch.setattr(profiler, "_in_situ_once", once)
    got = profiler.measure_in_situ(None, "cpu", {}, {}, runs=2, previous=earlier)  # type: ignore[arg-type]
    assert len(got["samples"]["runs"]) == 5  # the earlier three and two more
    assert got["compute_s"] == 3.0 and got["compute_samples_s"] == [3.0]  # median of 1, 2, 3, 10, 10
    assert got["msg_worker_a"] == pytest.approx(1e-4)
