"""`pssim validate`, `pssim simulate` and `pssim schema` on good and bad input, as a user runs them.

A bad scenario exits with code 2 and prints one `error: FILE: field.path: message` line per problem
on stderr, never a traceback, and writes nothing (DESIGN.md sections 3 and 6).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINE = re.compile(r"^error: .+: .*$")

GOOD = """\
name: good
model: {kind: mlp, input_dim: 32, hidden: [16], output_dim: 4}
training: {batch_size: 8, steps: 6, warmup_steps: 1}
cluster: {workers: {count: 2}, servers: {count: 1}}
compute: {step_time_s: 0.001}
sharding: {partition_bytes: 1024}
"""

BAD = """\
name: Bad Name
model: {kind: mlp, input_dim: 32, hidden: [16], output_dim: 4}
training: {batch_size: 8, steps: 6, warmup_steps: 1, epochs: 3}
cluster: {workers: {count: 2}, servers: {count: 1}}
sync: {mode: ssp, staleness: -1}
pipeline: {stages: 5}
"""
BAD_LINES = {
    "name: must be lowercase letters, digits, '_' or '-' (got 'Bad Name')",
    "training.epochs: unknown field "
    "(expected one of: batch_size, steps, warmup_steps, samples_per_worker, optimizer)",
    "sync.staleness: must be >= 0 (got -1)",
    "pipeline.stages: must be <= the model's 2 layers (got 5)",
}


def pssim(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("pssim")
    cmd = (
        [str(exe)]
        if exe.exists()
        else [sys.executable, "-c", "import sys; from pssim.cli import main; sys.exit(main())"]
    )
    return subprocess.run([*cmd, *args], cwd=cwd, capture_output=True, text=True, timeout=60)


def _error_lines(proc: subprocess.CompletedProcess[str]) -> list[str]:
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.splitlines()
    assert lines and all(LINE.match(line) for line in lines), proc.stderr
    return lines


@pytest.fixture
def files(tmp_path: Path) -> Path:
    (tmp_path / "good.yaml").write_text(GOOD)
    (tmp_path / "bad.yaml").write_text(BAD)
    (tmp_path / "syntax.yaml").write_text("name: x\nmodel: {kind: mlp\n")
    (tmp_path / "dup.yaml").write_text("name: x\nseed: 1\nseed: 2\n")
    (tmp_path / "empty.yaml").write_text("")
    (tmp_path / "list.yaml").write_text("- name: x\n")
    (tmp_path / "folder.yaml").mkdir()
    return tmp_path


def test_validate_good_file(files: Path) -> None:
    proc = pssim("validate", "good.yaml", cwd=files)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["ok: good.yaml: good"]
    assert proc.stderr == ""


def test_validate_reports_every_problem_one_line_each(files: Path) -> None:
    lines = _error_lines(pssim("validate", "bad.yaml", cwd=files))
    assert {line.removeprefix("error: bad.yaml: ") for line in lines} == BAD_LINES


def test_validate_reports_every_file(files: Path) -> None:
    names = [
        "good.yaml",
        "bad.yaml",
        "syntax.yaml",
        "dup.yaml",
        "empty.yaml",
        "list.yaml",
        "folder.yaml",
        "missing.yaml",
    ]
    proc = pssim("validate", *names, cwd=files)
    lines = _error_lines(proc)
    assert proc.stdout == ""  # nothing is "ok" while any file is bad
    by_file: dict[str, list[str]] = {}
    for line in lines:
        by_file.setdefault(line.split(": ")[1], []).append(line)
    assert sorted(by_file) == sorted(names[1:])
    assert len(by_file["bad.yaml"]) == len(BAD_LINES)
    assert "invalid YAML at line 3" in by_file["syntax.yaml"][0]
    assert "duplicate key 'seed'" in by_file["dup.yaml"][0]
    assert by_file["empty.yaml"] == [
        "error: empty.yaml: the file is empty (expected a mapping of scenario fields)"
    ]
    assert by_file["list.yaml"] == [
        "error: list.yaml: must be a YAML mapping of scenario fields (got a list)"
    ]
    assert by_file["folder.yaml"] == ["error: folder.yaml: is a directory, not a scenario file"]
    assert by_file["missing.yaml"] == ["error: missing.yaml: no such file"]


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        (
            "training.steps",
            "error: good.yaml: --set: expected field.path=value (got 'training.steps')",
        ),
        (
            "training.stepz=3",
            "error: good.yaml: training.stepz: unknown field (did you mean 'steps'?) (from --set)",
        ),
        (
            "training.steps=-3",
            "error: good.yaml: training.steps: must be > 0 (got -3) (from --set)",
        ),
    ],
)
def test_validate_bad_set(files: Path, override: str, expected: str) -> None:
    assert _error_lines(pssim("validate", "good.yaml", "--set", override, cwd=files)) == [expected]


@pytest.mark.parametrize(
    ("file", "overrides"),
    [
        ("bad.yaml", []),
        ("syntax.yaml", []),
        ("missing.yaml", []),
        ("good.yaml", ["--set", "sync.mode=ssp", "--set", "sync.staleness=-1"]),
        ("good.yaml", ["--set", "no-equals-sign"]),
    ],
)
def test_simulate_refuses_bad_input_and_writes_nothing(
    files: Path, file: str, overrides: list[str]
) -> None:
    out = files / "out"
    lines = _error_lines(pssim("simulate", file, "--out", str(out), *overrides, cwd=files))
    assert all(line.startswith(f"error: {file}: ") for line in lines), lines
    assert not out.exists()


def test_simulate_good_file_writes_results(files: Path) -> None:
    out = files / "out"
    proc = pssim(
        "simulate",
        "good.yaml",
        "--out",
        str(out),
        "--quiet",
        "--set",
        "compute.profile=none",
        cwd=files,
    )
    assert proc.returncode == 0, proc.stderr
    folder = out / "good" / "sim"
    assert {"scenario.yaml", "steps.csv", "summary.json"} <= {p.name for p in folder.iterdir()}
    # the resolved scenario that ran validates, and is the same scenario
    proc = pssim("validate", str(folder / "scenario.yaml"), cwd=files)
    assert proc.returncode == 0, proc.stderr


def test_command_line_mistakes_exit_2(files: Path) -> None:
    for args in (
        ["validate"],
        ["simulate"],
        ["frobnicate"],
        ["simulate", "good.yaml", "--jobs", "3"],
    ):
        proc = pssim(*args, cwd=files)
        assert proc.returncode == 2, args
        assert "Traceback" not in proc.stderr
        assert proc.stderr.startswith("error: "), proc.stderr


def test_schema_is_json_and_checks_scenarios(files: Path) -> None:
    proc = pssim("schema", cwd=files)
    assert proc.returncode == 0, proc.stderr
    schema = json.loads(proc.stdout)
    assert schema["type"] == "object" and "name" in schema["required"]
    assert {"model", "training", "cluster", "sync", "pipeline", "faults"} <= set(
        schema["properties"]
    )
    jsonschema = pytest.importorskip("jsonschema")
    import yaml

    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    scenarios = sorted((ROOT / "scenarios").rglob("*.yaml"))
    assert scenarios
    for f in scenarios:
        data = json.loads(
            json.dumps(yaml.safe_load(f.read_text()))
        )  # as an editor sees it: string keys
        errors = [e.message for e in validator.iter_errors(data)]
        assert not errors, (f, errors)
    assert list(validator.iter_errors({"name": "x", "colour": "red"}))


# ------------------------------------------------ inputs that validated and then crashed or hung
def test_validate_reads_only_regular_files_of_bounded_size_and_never_blocks(tmp_path: Path) -> None:
    """A FIFO with no writer, /dev/zero, a directory and a file over 1 MB: each refused at once,
    one line naming it (the FIFO blocked `pssim validate` forever, /dev/zero exhausted memory)."""
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)
    big = tmp_path / "big.yaml"
    big.write_bytes(b"name: big\n" + b"#" * 1_000_000 + b"\n")
    (tmp_path / "dir.yaml").mkdir()
    t0 = time.monotonic()
    proc = pssim("validate", "fifo.yaml", "/dev/zero", "dir.yaml", "big.yaml", cwd=tmp_path)
    assert time.monotonic() - t0 < 30
    assert _error_lines(proc) == [
        "error: fifo.yaml: is a named pipe (FIFO), not a regular file: "
        "scenarios are read from regular files only",
        "error: /dev/zero: is a character device, not a regular file: "
        "scenarios are read from regular files only",
        "error: dir.yaml: is a directory, not a scenario file",
        f"error: big.yaml: is {big.stat().st_size} bytes, more than the 1000000 (1 MB) "
        "a scenario file may have",
    ]


@pytest.mark.parametrize(
    ("overrides", "field", "fragment"),
    [
        (["cluster.servers.count=1000000000"], "cluster.servers.count", "must be <= 10000"),
        (["seed=1180591620717411303424"], "seed", "must be <= 4294967295"),
        (["training.steps=1000000000"], "training.steps", "must be <= 10000000"),
        (["compute.step_time_s=1.0e+300"], "compute.step_time_s", "must be <= 100000.0"),
        (["stragglers.slowdown={1: 1.0e+300}"], "stragglers.slowdown.1", "must be <= 1000.0"),
        (["training.optimizer.lr=1.0e+300"], "training.optimizer.lr", "must be <= 1000.0"),
        (["compute.profile=/etc/passwd"], "compute.profile", "/etc/passwd: not a psreal profile"),
        (["compute.profile=/dev/zero"], "compute.profile", "/dev/zero: not a regular file"),
        # fine one by one, too much together: refused with the estimate
        (["training.steps=10000000"], "training.steps", "the simulator would hold about"),
        (
            ["cluster.workers.count=100000", "training.steps=1000"],
            "cluster.workers.count",
            "the simulation would take about",
        ),
        (
            ["compute.step_time_s=100000", "training.steps=100"],
            "compute.step_time_s",
            "the run would reach about 1e+07 s of simulated time",
        ),
    ],
)
def test_validate_refuses_what_a_backend_cannot_run_at_once(
    files: Path, overrides: list[str], field: str, fragment: str
) -> None:
    t0 = time.monotonic()
    sets = [arg for o in overrides for arg in ("--set", o)]
    lines = _error_lines(pssim("validate", "good.yaml", *sets, cwd=files))
    assert time.monotonic() - t0 < 30  # `servers.count: 1e9` took 15 s, then crashed
    assert any(
        line.startswith(f"error: good.yaml: {field}: ") and fragment in line for line in lines
    ), lines


def test_simulate_refuses_a_named_bad_profile_before_running(files: Path) -> None:
    out = files / "out"
    lines = _error_lines(
        pssim(
            "simulate",
            "good.yaml",
            "--out",
            str(out),
            "--set=compute.profile=/etc/passwd",
            cwd=files,
        )
    )
    assert len(lines) == 1 and "compute.profile: /etc/passwd: not a psreal profile" in lines[0]
    assert not out.exists()
