"""Profile files are input like scenarios: one that is not a profile is refused with one line
naming it (exit 2) when a scenario names it, and a corrupt or forged one in the cache is reported
once, named, and ignored."""

from __future__ import annotations

from pathlib import Path

import pytest

from pssim.cli import main
from pssim.costs import build_costs
from pssim.profile import ProfileError, cache_path, load_profile, profile_key
from pssim.scenario import load_scenario

QUICKSTART = str(Path(__file__).resolve().parents[1] / "scenarios" / "quickstart.yaml")


@pytest.mark.parametrize(
    ("content", "says"),
    [
        ("root:x:0:0:root:/root:/bin/bash\n", "not a psreal profile"),
        ('{"version": 5}', "not a psreal profile"),
        (
            '{"key": {}, "host": "h", "device_name": "cpu", "cores": 0, "step_compute_s": 1}',
            "cores",
        ),
    ],
)
def test_a_file_that_is_not_a_profile_is_refused_in_one_line(
    tmp_path: Path, content: str, says: str
) -> None:
    f = tmp_path / "p.json"
    f.write_text(content)
    with pytest.raises(ProfileError) as err:
        load_profile(f)
    assert says in str(err.value) and "\n" not in str(err.value)


def test_only_a_regular_file_is_read(tmp_path: Path) -> None:
    for path, says in ((tmp_path, "not a regular file"), (tmp_path / "no", "no such file")):
        with pytest.raises(ProfileError, match=says):
            load_profile(path)
    with pytest.raises(ProfileError, match="not a regular file"):
        load_profile("/dev/zero")


def test_simulate_refuses_a_named_bad_profile_with_exit_2_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    code = main(["simulate", QUICKSTART, "--set=compute.profile=/etc/passwd", "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "compute.profile: /etc/passwd: not a psreal profile" in err[0]
    assert not out.exists()


def test_a_corrupt_cached_profile_is_reported_once_and_ignored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PSSIM_CACHE", str(tmp_path))
    scn = load_scenario(QUICKSTART, [])
    entry = cache_path(profile_key(scn))
    entry.parent.mkdir(parents=True)
    entry.write_text('{"forged": true}')
    for _ in range(3):
        assert build_costs(scn).source == "roofline:cpu"
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(entry) in err[0] and "ignored" in err[0]
