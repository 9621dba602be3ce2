"""The `psreal` command line: `psreal run` and `psreal profile` (DESIGN.md section 6).

`psreal run FILE` runs the scenario for real with local processes, or, started by torchrun, as one
rank of a multi-node run (every rank runs the same command; rank 0 writes the results):

    torchrun --nnodes 2 --nproc-per-node N --rdzv-backend c10d --rdzv-endpoint HOST:29400 \\
        -m psreal.cli run FILE --set cluster.network.emulation=none

where the total number of processes is 1 + servers + workers x stages.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from pssim.cli import EXIT_BAD_INPUT, _Parser, print_summary
from pssim.results import OutputError, check_output_folder
from pssim.scenario import ScenarioErrors, load_all


def build_parser() -> argparse.ArgumentParser:
    ap = _Parser(prog="psreal", description="Run parameter-server scenarios for real with PyTorch.")
    sub = ap.add_subparsers(dest="cmd", required=True, parser_class=_Parser)
    p = sub.add_parser("run", help="run a scenario with real processes")
    p.add_argument("file")
    p.add_argument("--out", default="results", help="output folder (default: results/)")
    p.add_argument(
        "--device", choices=["cpu", "cuda"], default=None, help="override cluster.workers.device"
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=1800.0,
        help="fail the run after this many seconds (default 1800)",
    )
    p.add_argument(
        "--stall-timeout",
        type=float,
        default=120.0,
        help="fail the run when no worker makes progress for this many seconds (default 120)",
    )
    p.add_argument(
        "--heartbeat-timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="fail the run, naming the role, its rank and last step, when a role process sends "
        "no heartbeat for this many seconds (stopped with SIGSTOP, frozen); each role beats "
        "from a thread of its own every tenth of this (at most every 0.5 s), busy or not "
        "(default 10)",
    )
    p.add_argument(
        "--save-params",
        action="store_true",
        help="also write the final parameters to OUT/<scenario>/real/params.pt ({name: tensor})",
    )
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="a.b=v")
    p = sub.add_parser("profile", help="measure compute and host costs for the simulator")
    p.add_argument("file")
    p.add_argument(
        "--out", default=None, help="profile file (default: the per-host cache pssim reads)"
    )
    p.add_argument(
        "--more",
        action="store_true",
        help="add calibration runs to the profile already there and take its in-situ figures "
        "over all of them (a whole new profile if there is none)",
    )
    p.add_argument("--device", choices=["cpu", "cuda"], default=None)
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="a.b=v")
    return ap


def _progress_bar(quiet: bool):  # noqa: ANN202
    if quiet or not sys.stderr.isatty():
        return None, None
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    prog = Progress(
        TextColumn("psreal"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} steps"),
        TimeElapsedColumn(),
        transient=True,
    )
    task = prog.add_task("run", total=1)
    prog.start()

    def update(done: int, total: int) -> None:
        prog.update(task, completed=done, total=total)

    return prog, update


_SECONDS_OPTIONS = ("timeout", "stall_timeout", "heartbeat_timeout")


def _bad_seconds(args: argparse.Namespace) -> str | None:
    """The line refusing the first duration option that is not a positive, finite number."""
    for name in _SECONDS_OPTIONS:
        v = getattr(args, name, None)
        if v is not None and not (math.isfinite(v) and v > 0):
            flag = "--" + name.replace("_", "-")
            return f"error: {flag}: must be a positive number of seconds (got {v:g})"
    return None


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    bad = _bad_seconds(args)
    if bad is not None:  # before anything runs
        print(bad, file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        (scn,) = load_all([args.file], args.overrides)
    except ScenarioErrors as exc:
        for line in exc.lines():
            print(line, file=sys.stderr)
        return EXIT_BAD_INPUT
    try:  # before anything runs: where the results go must take them
        if args.cmd == "run":
            check_output_folder(args.out)
        elif args.out is not None:
            check_output_folder(Path(args.out).parent)
    except OutputError as exc:
        print(f"error: --out: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    from .launch import RunFailed, resolve_device

    device, warning = resolve_device(scn, args.device)
    if warning:
        print(warning, file=sys.stderr)
    if args.cmd == "profile":
        from .profiler import profile_scenario

        path, prof = profile_scenario(scn, device, args.out, quiet=args.quiet, more=args.more)
        if not args.quiet:
            print(f"profile: {path}")
            print(
                f"  step compute {prof.step_compute_s * 1e3:.3f} ms, "
                f"per-message overhead {prof.msg_overhead_s * 1e6:.1f} us, cores {prof.cores}"
            )
        return 0
    from .launch import run_local, run_torchrun

    torchrun = "TORCHELASTIC_RUN_ID" in os.environ or (
        "RANK" in os.environ and "WORLD_SIZE" in os.environ
    )
    prog, update = _progress_bar(args.quiet or (torchrun and os.environ.get("RANK") != "0"))
    try:
        if torchrun:
            run = run_torchrun
        else:
            run = run_local
        res = run(
            scn,
            args.out,
            device,
            args.timeout,
            args.stall_timeout,
            update,
            args.save_params,
            heartbeat_s=args.heartbeat_timeout,
        )
    except RunFailed as exc:
        if prog:
            prog.stop()
        for line in exc.lines:
            print(line, file=sys.stderr)
        sys.stderr.flush()
        os._exit(exc.code)  # a role thread may still sit in gloo: leave without waiting for it
    except OutputError as exc:  # the disk filled up meanwhile: the previous results stay
        if prog:
            prog.stop()
        print(f"error: {exc}", file=sys.stderr)
        sys.stderr.flush()
        os._exit(1)
    if prog:
        prog.stop()
    if res is not None and not args.quiet:
        folder, summary = res
        print_summary(summary, folder)
    return 0


if __name__ == "__main__":
    sys.exit(main())
