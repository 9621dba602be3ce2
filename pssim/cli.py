"""The `pssim` command line (DESIGN.md section 6).

Every command validates its scenarios before anything runs: a bad scenario prints one
`error: FILE: field.path: message` line per problem on stderr and exits with code 2, writing
nothing. Long runs show progress on a terminal only.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from collections.abc import Sequence
from typing import Any

from .profile import ProfileError
from .results import OutputError, check_output_folder
from .scenario import ScenarioError, ScenarioErrors, json_schema, load_all

EXIT_BAD_INPUT = 2
EXIT_FAILED = 1
EXIT_INTERRUPTED = 130  # 128 + SIGINT
EXIT_TERMINATED = 128 + signal.SIGTERM


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2, like a bad scenario
        self.exit(EXIT_BAD_INPUT, f"error: {self.prog}: {message}\n")


def _add_set(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="a.b=v",
        help="override a scenario field by dotted path (repeatable)",
    )


def build_parser() -> argparse.ArgumentParser:
    ap = _Parser(
        prog="pssim",
        description="Simulate parameter-server training; compare with psreal; plan hardware.",
    )
    ap.add_argument("--version", action="version", version=f"pssim {_version()}")
    sub = ap.add_subparsers(dest="cmd", required=True, parser_class=_Parser)

    p = sub.add_parser(
        "validate", help="check scenario files (exit 0, or 2 with one line per problem)"
    )
    p.add_argument("files", nargs="+")
    _add_set(p)

    sub.add_parser("schema", help="print the JSON Schema of the scenario format")

    p = sub.add_parser("simulate", help="run the simulator on a scenario")
    p.add_argument("file")
    p.add_argument(
        "--here",
        action="store_true",
        help="predict the run psreal makes of the scenario on this machine (its cores, scheduler "
        "and transport, from the cached profile) instead of the cluster the scenario describes",
    )
    p.add_argument("--out", default="results", help="output folder (default: results/)")
    p.add_argument("--quiet", action="store_true", help="print nothing but errors")
    p.add_argument(
        "--runs",
        type=int,
        default=1,
        help="simulate this many times, each with its own draw of the compute's natural "
        "variation, and write the median run, with every run's throughput in summary.json "
        "(default 1)",
    )
    _add_set(p)

    p = sub.add_parser("compare", help="run simulator and real backend, write comparison and plots")
    p.add_argument("files", nargs="+")
    p.add_argument("--out", default="results")
    p.add_argument(
        "--report-dir", default=None, help="also write the suite report (table, parity plot) here"
    )
    p.add_argument(
        "--repeats",
        type=int,
        default=1,
        help="real runs per scenario (the spread is the noise floor); with several scenarios the "
        "repeats run round by round, so each scenario's runs span the whole session",
    )
    p.add_argument(
        "--sim-runs",
        type=int,
        default=5,
        help="simulator runs per scenario (see `pssim simulate --runs`; default 5)",
    )
    p.add_argument(
        "--device", choices=["cpu", "cuda"], default=None, help="override cluster.workers.device"
    )
    p.add_argument(
        "--reprofile", action="store_true", help="measure the device profile even if one is cached"
    )
    p.add_argument(
        "--reuse-real",
        action="store_true",
        help="compare against the real runs an earlier compare left in --out (and the cached "
        "profile) instead of running psreal again: only the simulator runs",
    )
    _add_set(p)

    p = sub.add_parser("sweep", help="run a grid of variants of one scenario")
    p.add_argument("file")
    p.add_argument(
        "--grid",
        action="append",
        required=True,
        metavar="a.b=v1,v2",
        help="a field and its values (repeatable)",
    )
    p.add_argument("--backend", choices=["sim", "real", "both"], default="sim")
    p.add_argument("--jobs", type=int, default=1)
    p.add_argument("--out", default="results")
    _add_set(p)

    p = sub.add_parser("plan", help="extrapolate a scenario to catalog hardware")
    p.add_argument("file")
    p.add_argument(
        "--catalog", required=True, help="hardware catalog YAML (same format as the built-in one)"
    )
    p.add_argument("--target-samples-per-s", type=float, default=None)
    p.add_argument("--budget-per-hour", type=float, default=None)
    p.add_argument(
        "--workers",
        default=None,
        metavar="N,N,...",
        help="worker counts to try (default 1,2,4,8,16,32,64)",
    )
    p.add_argument(
        "--servers",
        default=None,
        metavar="N,N,...",
        help="PS shard counts to try (default 1,2,4,8)",
    )
    p.add_argument(
        "--jobs", type=int, default=None, help="simulations in parallel (default: one per CPU)"
    )
    p.add_argument("--out", default="results")
    _add_set(p)
    return ap


def _version() -> str:
    from . import __version__

    return __version__


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C (what was being written is removed, psreal stops every
    process); the command exits EXIT_TERMINATED. Both CLIs raise it from their handler."""


def _on_sigterm(signum: int, frame: Any) -> None:  # noqa: ARG001
    raise Terminated


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        return _dispatch(args)
    except ScenarioErrors as exc:
        for line in exc.lines():
            print(line, file=sys.stderr)
        return EXIT_BAD_INPUT
    except ScenarioError as exc:
        for line in exc.lines():
            print(line, file=sys.stderr)
        return EXIT_BAD_INPUT
    except ProfileError as exc:
        print(f"error: compute.profile: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except OutputError as exc:  # a folder checked writable filled up or went away meanwhile
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except Terminated:
        print("error: terminated (SIGTERM)", file=sys.stderr)
        return EXIT_TERMINATED
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def _dispatch(args: argparse.Namespace) -> int:
    if args.cmd == "schema":
        print(json.dumps(json_schema(), indent=2))
        return 0
    if args.cmd == "validate":
        scns = load_all(args.files, args.overrides)
        for f, s in zip(args.files, scns, strict=True):
            print(f"ok: {f}: {s.name}")
        return 0
    scns = load_all(args.files if args.cmd == "compare" else [args.file], args.overrides)
    if not _output_ok(args.out):
        return EXIT_BAD_INPUT
    if args.cmd == "simulate":
        (scn,) = scns
        from .run import run_sim

        if args.runs < 1:
            print(f"error: --runs: must be >= 1 (got {args.runs})", file=sys.stderr)
            return EXIT_BAD_INPUT
        view = "here" if args.here else "target"
        folder, summary = run_sim(scn, args.out, runs=args.runs, view=view)
        if not args.quiet:
            print_summary(summary, folder)
        return 0
    if args.cmd == "compare":
        from .compare import compare_main

        return compare_main(scns, args)
    (scn,) = scns
    if args.cmd == "sweep":
        from .sweep import sweep_main

        return sweep_main(scn, args)
    if args.cmd == "plan":
        from .plan import plan_main

        return plan_main(scn, args)
    raise AssertionError(args.cmd)


def _output_ok(out: str) -> bool:
    """Whether results can be written to `out`; if not, says why in one line (before any run)."""
    try:
        check_output_folder(out)
    except OutputError as exc:
        print(f"error: --out: {exc}", file=sys.stderr)
        return False
    return True


def print_summary(summary: dict[str, Any], folder: Any) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"{summary['scenario']} ({summary['backend']})", show_header=True)
    t.add_column("metric")
    t.add_column("value", justify="right")
    st = summary["step_time_s"]
    rows = [
        ("throughput", f"{summary['throughput_samples_per_s']:.1f} samples/s"),
        (
            "step time mean / p50 / p95",
            f"{st['mean'] * 1e3:.2f} / {st['p50'] * 1e3:.2f} / {st['p95'] * 1e3:.2f} ms",
        ),
        (
            "compute / comm / wait (mean)",
            " / ".join(
                f"{summary[k]['mean'] * 1e3:.2f}"
                for k in ("compute_time_s", "comm_time_s", "wait_time_s")
            )
            + " ms",
        ),
        (
            "staleness mean / max",
            f"{summary['staleness']['mean']:.2f} / {summary['staleness']['max']}",
        ),
        ("bytes sent", f"{summary['bytes_sent_total'] / 1e6:.2f} MB"),
        ("bubble fraction", f"{summary['bubble_fraction']:.3f}"),
    ]
    if "simulated_time_s" in summary:
        rows.append(
            ("simulated time", f"{summary['simulated_time_s']:.3f} s ({summary['events']} events)")
        )
    if "final_loss" in summary:
        rows.append(("final loss", f"{summary['final_loss']:.4f}"))
    if "view" in summary:
        rows += _view_rows(summary)
    rows.append(("wall time", f"{summary['wall_time_s']:.2f} s"))
    for k, v in rows:
        t.add_row(k, v)
    c = Console()
    c.print(t)
    c.print(f"results: {folder}")


def _view_rows(summary: dict[str, Any]) -> list[tuple[str, str]]:
    """What a simulator summary says of its view and of where its costs came from."""
    views = {
        "target": "target cluster (nothing of this machine)",
        "here": "this machine, as psreal runs the scenario (--here)",
    }
    rows = [("view", views.get(summary["view"], summary["view"]))]
    for k, v in (summary.get("cost_sources") or {}).items():
        rows.append((f"{k.replace('_', ' ')} from", str(v)))
    host = summary.get("host_model")
    if host:
        cap = host["transport_cap_bytes_per_s"]
        rows.append(
            (
                "host model",
                f"{host['cores']} cores, slice {host['cpu_slice_s'] * 1e3:.2f} ms, "
                f"{len(host['per_message_cpu'])} message ops"
                + (f", transport cap {cap / 1e9:.2f} GB/s" if cap else "")
                + (", arbiter" if host["arbiter"] else ""),
            )
        )
    return rows


if __name__ == "__main__":
    sys.exit(main())
