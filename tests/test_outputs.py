"""Where results go: an unusable --out is refused before anything runs (exit 2, one line), a
failure while writing leaves the previous results as they were and no hidden folder, and runs
writing the same folder at once never crash (each writes whole, the last one wins)."""

from __future__ import annotations

import errno
import json
import multiprocessing as mp
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pssim.cli import main
from pssim.results import OutputError, check_output_folder, write_results
from pssim.scenario import load_scenario
from pssim.sim import simulate

QUICKSTART = str(Path(__file__).resolve().parents[1] / "scenarios" / "quickstart.yaml")
SHORT = ["--set=training.steps=8", "--set=training.warmup_steps=1", "--set=compute.profile=none"]


def _scn():  # noqa: ANN202
    return load_scenario(QUICKSTART, [s.removeprefix("--set=") for s in SHORT])


def _simulated():  # noqa: ANN202 - (scenario, records, summary) of the short quickstart
    from pssim.records import summarize

    scn = _scn()
    rec, extra = simulate(scn)
    return scn, rec, summarize(scn, rec, extra)


def _failing_write(monkeypatch: pytest.MonkeyPatch, name: str, exc: BaseException) -> None:
    """Path.write_text raises `exc` for a file called `name` (as a full disk or Ctrl-C would)."""
    real_write = Path.write_text

    def write(self: Path, *a, **k):  # noqa: ANN002, ANN003, ANN202
        if self.name == name:
            raise exc
        return real_write(self, *a, **k)

    monkeypatch.setattr(Path, "write_text", write)


def test_an_out_that_is_a_file_is_refused_before_anything_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    f = tmp_path / "file"
    f.write_text("x")
    assert main(["simulate", QUICKSTART, *SHORT, "--out", str(f)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: --out: {f}: not a folder"]


def test_an_unwritable_out_is_refused_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def read_only(*_a, **_k):  # noqa: ANN002, ANN003, ANN202
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr("pssim.results.tempfile.mkstemp", read_only)
    with pytest.raises(OutputError, match="Read-only file system"):
        check_output_folder(tmp_path)
    out = tmp_path / "out"
    assert main(["simulate", QUICKSTART, *SHORT, "--out", str(out)]) == 2
    assert "results cannot be written there (Read-only file system)" in capsys.readouterr().err


def test_psreal_run_refuses_an_out_that_is_a_file_before_it_starts(tmp_path: Path) -> None:
    f = tmp_path / "file"
    f.write_text("x")
    done = subprocess.run(
        [sys.executable, "-m", "psreal.cli", "run", QUICKSTART, "--out", str(f)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and done.stderr.strip() == f"error: --out: {f}: not a folder"


def test_a_full_disk_while_writing_keeps_the_previous_results_and_no_hidden_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scn, rec, summary = _simulated()
    folder = write_results(tmp_path, scn, "sim", rec, summary)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    _failing_write(monkeypatch, "trace.json", OSError(errno.ENOSPC, "No space left on device"))
    with pytest.raises(OutputError, match="No space left on device"):
        write_results(tmp_path, scn, "sim", rec, {**summary, "throughput_samples_per_s": 1.0})
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    assert sorted(p.name for p in folder.parent.iterdir()) == ["sim"]


def test_an_interrupted_write_and_a_killed_writer_leave_no_hidden_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scn, rec, summary = _simulated()
    with monkeypatch.context() as m:
        _failing_write(m, "summary.json", KeyboardInterrupt())
        with pytest.raises(KeyboardInterrupt):
            write_results(tmp_path, scn, "sim", rec, summary)
    assert not list((tmp_path / scn.name).iterdir())
    # a writer killed outright (SIGKILL) leaves its folder: the next write removes it
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        text=True,
        capture_output=True,
        check=True,
    ).stdout.strip()
    stale = tmp_path / scn.name / f".sim.tmp-{dead}-abc"
    stale.mkdir()
    write_results(tmp_path, scn, "sim", rec, summary)
    assert sorted(p.name for p in (tmp_path / scn.name).iterdir()) == ["sim"]


def _write_many(out: str, k: int) -> None:
    scn, rec, summary = _simulated()
    for i in range(6):
        write_results(out, scn, "sim", rec, {**summary, "writer": [k, i]})


def test_runs_writing_the_same_folder_at_once_each_write_whole() -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as out:
        ctx = mp.get_context("spawn")
        procs = [ctx.Process(target=_write_many, args=(out, k)) for k in range(4)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(120)
        assert [p.exitcode for p in procs] == [0, 0, 0, 0]
        folder = Path(out) / "quickstart"
        assert sorted(os.listdir(folder)) == ["sim"]
        files = sorted(os.listdir(folder / "sim"))
        assert files == ["scenario.yaml", "steps.csv", "summary.json", "trace.json"]
        assert json.loads((folder / "sim" / "summary.json").read_text())["writer"][1] == 5
