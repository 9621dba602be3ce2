"""Result files of DESIGN.md section 7, written atomically by both backends.

`write_results` puts scenario.yaml, steps.csv, summary.json and trace.json for one backend into a
fresh temporary folder beside the target and renames it into place, so a reader sees either the
previous complete set or the new complete set, never a half-written one.
"""

from __future__ import annotations

import csv
import errno
import io
import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .records import SPAN_KINDS, STEP_TIME_FIELDS, Records

if TYPE_CHECKING:
    from .scenario import Scenario

STEPS_COLUMNS = (
    "worker",
    "stage",
    "step",
    "version_read",
    "staleness",
    "pull_start_s",
    "pull_end_s",
    "compute_start_s",
    "compute_end_s",
    "push_start_s",
    "push_end_s",
    "wait_s",
    "samples",
    "bytes_sent",
)


def _clean(x: Any) -> Any:
    """JSON has no NaN/inf: write them as null."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_clean(v) for v in x]
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.floating):
        return _clean(float(x))
    return x


def dumps_json(obj: Any) -> str:
    return json.dumps(_clean(obj), indent=2, sort_keys=False, allow_nan=False) + "\n"


def steps_csv(rec: Records, with_loss: bool) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    cols = list(STEPS_COLUMNS) + (["loss"] if with_loss else [])
    w.writerow(cols)
    st = rec.staleness()
    t = rec.times
    for p in range(rec.n_procs):
        worker, stage = divmod(p, rec.n_stages)
        for step in range(rec.n_steps):
            if math.isnan(t["push_end_s"][p, step]):
                continue
            g = st[p, step]
            have = g >= 0
            vr = int(rec.grad_read[p, step][have].min()) if have.any() else ""
            sv = int(g[have].max()) if have.any() else ""
            row: list[Any] = [worker, stage, step, vr, sv]
            row += [f"{t[f][p, step]:.9f}" for f in STEP_TIME_FIELDS]
            row += [int(rec.samples[p, step]), int(rec.bytes_sent[p, step])]
            if with_loss:
                v = rec.loss[p, step]
                row.append("" if math.isnan(v) else f"{v:.6g}")
            w.writerow(row)
    return buf.getvalue()


def trace_json(rec: Records, backend: str) -> str:
    """Chrome/Perfetto trace: pull/wait/compute/push per worker process, work per shard."""
    ev: list[dict[str, Any]] = [
        {"name": "process_name", "ph": "M", "pid": 1, "args": {"name": f"{backend}: workers"}},
        {"name": "process_name", "ph": "M", "pid": 2, "args": {"name": f"{backend}: servers"}},
    ]
    for p in range(rec.n_procs):
        w, s = divmod(p, rec.n_stages)
        label = f"worker {w}" if rec.n_stages == 1 else f"worker {w} stage {s}"
        ev.append({"name": "thread_name", "ph": "M", "pid": 1, "tid": p, "args": {"name": label}})
    for s in range(rec.n_shards):
        ev.append(
            {"name": "thread_name", "ph": "M", "pid": 2, "tid": s, "args": {"name": f"shard {s}"}}
        )
    t = rec.times

    def span(name: str, pid: int, tid: int, a: float, b: float, args: dict | None = None) -> None:
        if not (math.isfinite(a) and math.isfinite(b)) or b < a:
            return
        e = {
            "name": name,
            "ph": "X",
            "pid": pid,
            "tid": tid,
            "ts": round(a * 1e6, 3),
            "dur": round((b - a) * 1e6, 3),
        }
        if args:
            e["args"] = args
        ev.append(e)

    for p in range(rec.n_procs):
        for step in range(rec.n_steps):
            a = t["pull_start_s"][p, step]
            wt = t["wait_s"][p, step]
            wt = 0.0 if math.isnan(wt) else wt
            if wt > 0:
                span("wait", 1, p, a, a + wt, {"step": step})
            span("pull", 1, p, a + wt, t["pull_end_s"][p, step], {"step": step})
            span(
                "compute",
                1,
                p,
                t["compute_start_s"][p, step],
                t["compute_end_s"][p, step],
                {"step": step},
            )
            span("push", 1, p, t["push_start_s"][p, step], t["push_end_s"][p, step], {"step": step})
    for s, k, a, b, nbytes in rec.spans:
        span(SPAN_KINDS[k], 2, s, a, b, {"bytes": nbytes} if nbytes else None)
    ev.sort(key=lambda e: (e.get("ts", -1), e.get("pid", 0), e.get("tid", 0)))
    return json.dumps({"traceEvents": ev, "displayTimeUnit": "ms"}, separators=(",", ":")) + "\n"


class OutputError(Exception):
    """Results cannot be written where asked; the message is one line naming the folder."""


def check_output_folder(out: str | Path) -> Path:
    """Fail early, before anything runs, where results could not be written: `out` (or a folder
    on its way) is a file, or its first existing folder is not writable (read-only file system,
    permissions). OutputError. Creates nothing."""
    p = Path(out)
    probe_in = p
    while not probe_in.exists() and probe_in != probe_in.parent:
        probe_in = probe_in.parent
    try:
        if not probe_in.is_dir():
            raise OutputError(
                f"{out}: not a folder" if probe_in == p else f"{probe_in}: not a folder"
            )
        fd, probe = tempfile.mkstemp(prefix=".write-check-", dir=probe_in)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise OutputError(f"{out}: results cannot be written there ({_why(exc)})") from None
    return p


def _why(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


def write_atomic_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


_TMP = ".{backend}.tmp-{pid}-"  # a folder being written; its writer's pid tells a stale one


def _remove_stale(parent: Path, backend: str) -> None:
    """Folders that writers killed outright (SIGKILL, power loss) left half-written."""
    for d in parent.glob(f".{backend}.tmp-*"):
        try:
            pid = int(d.name.split("-")[1])
            os.kill(pid, 0)  # its writer is alive: still writing
        except ProcessLookupError:
            shutil.rmtree(d, ignore_errors=True)
        except (ValueError, IndexError, PermissionError):
            continue


def write_results(
    out: str | Path, scn: Scenario, backend: str, rec: Records, summary: dict[str, Any]
) -> Path:
    """Write OUT/<scenario>/<backend>/ atomically; returns that folder.

    The files go into a hidden folder beside it, renamed into place once complete, so a reader
    sees the previous complete set or the new one. Runs writing the same folder at once each
    write whole and the last one wins. A failure to write (a full disk) raises OutputError and
    leaves the previous results as they were; an interruption leaves no hidden folder."""
    from .scenario import resolved_yaml

    parent = Path(out) / scn.name
    final = parent / backend
    tmp: Path | None = None
    try:
        parent.mkdir(parents=True, exist_ok=True)
        _remove_stale(parent, backend)
        tmp = Path(
            tempfile.mkdtemp(prefix=_TMP.format(backend=backend, pid=os.getpid()), dir=parent)
        )
        (tmp / "scenario.yaml").write_text(resolved_yaml(scn), encoding="utf-8")
        (tmp / "steps.csv").write_text(
            steps_csv(rec, with_loss=backend == "real"), encoding="utf-8"
        )
        (tmp / "summary.json").write_text(dumps_json(summary), encoding="utf-8")
        (tmp / "trace.json").write_text(trace_json(rec, backend), encoding="utf-8")
        _move_into_place(tmp, final)
    except OSError as exc:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        raise OutputError(
            f"{final}: results cannot be written ({_why(exc)}); the previous ones are as they were"
        ) from None
    except BaseException:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def _move_into_place(tmp: Path, final: Path) -> None:
    """Rename the complete folder `tmp` to `final`, moving any folder there aside first (another
    run may put one there meanwhile: then again)."""
    for attempt in range(100):
        old = final.parent / f".{final.name}.old-{os.getpid()}-{attempt}"
        try:
            os.replace(final, old)
        except FileNotFoundError:
            old = None  # nothing there
        try:
            os.replace(tmp, final)
        except OSError as exc:
            if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
            continue  # another writer put its folder there since: move that one aside too
        finally:
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
        return
    raise OSError(errno.EBUSY, "other runs kept replacing it")
