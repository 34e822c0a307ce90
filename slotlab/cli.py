"""Command line: ``python -m slotlab train ...``, ``python -m slotlab sweep --grid ...`` and
``python -m slotlab export RUN``.

Flags of ``train`` (and the base config of ``sweep``) are generated from ``RunConfig``'s common fields and from
every method's options (``slotlab.methods``: help and choices sit on the option), so the CLI and the Python API
cannot drift apart; an option the chosen method does not have is refused in one line. ``train`` runs unchanged under
``torchrun --nproc-per-node=N -m slotlab train ...`` (DistributedDataParallel; rank 0 prints and writes).
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import fields
from pathlib import Path
from typing import NoReturn

import pandas as pd

from slotlab import dataset_files, distributed
from slotlab.config import CHOICES, FIELD_HELP, RECIPES, SEED_FIELDS, RunConfig
from slotlab.data import DATASETS, data_root
from slotlab.errors import INTERRUPTED_EXIT_CODE, DiskError, SlotlabError, disk_error
from slotlab.export import export_run
from slotlab.methods import METHODS, methods_with_option, option_specs
from slotlab.models import MODELS
from slotlab.reproduce import OUT as REPRODUCTIONS
from slotlab.reproduce import experiment_list, reproduce
from slotlab.runs import load_or_run, open_run, run_dir
from slotlab.sweep import parse_assignments, sweep


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: the usage block buries the line that matters."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (--help lists the options)\n")


def _catalogue() -> str:
    lines = ["methods:"] + [f"  {n:<14} {m.description}" for n, m in METHODS.items()]
    lines += ["models:"] + [f"  {n:<14} {d}" for n, (_, d) in MODELS.items()]
    lines += ["datasets:"] + [f"  {n:<14} {d.description}" for n, d in DATASETS.items()]
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="slotlab", description="Study networks found inside random weights.")
    parser.add_argument(
        "--debug", action="store_true", help="show the full traceback of an error (also SLOTLAB_DEBUG=1)"
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    train = sub.add_parser(
        "train",
        help="train one run (cached: a finished run is only read back)",
        epilog=_catalogue(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _config_flags(train)
    sweep = sub.add_parser(
        "sweep",
        help="train many runs from a grid of overrides, in parallel, and print the summary table",
        description="Points are runs named by their config hash: finished ones are read back, stopped ones "
        "resume, and runs another process is training are waited for. The other flags set the base config.",
        epilog="example: python -m slotlab sweep --dataset cifar10 --model conv4 --epochs 30 "
        "--grid k=1,2,4,8,16 seed=0,1,2 --workers 2\n\n" + _catalogue(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sweep.add_argument(
        "--grid",
        nargs="+",
        default=[],
        metavar="NAME=V1,V2",
        help="fields and their values; every combination is a point (seed=... sets all five seeds; "
        "list fields take alternatives separated by '/': milestones=25,75/80)",
    )
    sweep.add_argument(
        "--point",
        action="append",
        default=[],
        metavar='"NAME=V ..."',
        help="one point (space-separated assignments); repeat for a list of points, combined with --grid",
    )
    _config_flags(sweep)
    sweep.add_argument(
        "--workers", type=int, default=None, help="parallel processes (default: one per GPU, else up to 4)"
    )
    sweep.add_argument(
        "--no-wait", action="store_true", help="report runs locked by another process instead of waiting"
    )
    export = sub.add_parser("export", help="write a run's found network: a plain model and a compact file")
    export.add_argument("run", help="run folder (or its hash)")
    export.add_argument("--runs", default=None, help="runs folder to look the hash up in")
    reproduce = sub.add_parser(
        "reproduce",
        help="run a paper's figure or table by name and compare it with the published numbers",
        description="Writes reproductions/NAME/: table.csv, summary.csv, verdicts.csv and the figure (PDF, SVG, "
        "PNG). The runs are ordinary cached runs: a second call reads them back.",
    )
    reproduce.add_argument("name", nargs="?", help="the experiment, e.g. slot-machines/k-sweep (see --list)")
    reproduce.add_argument("--list", action="store_true", help="list every experiment with its status")
    reproduce.add_argument(
        "--throughput",
        default=None,
        help="with --list: a throughput.csv of benchmarks/gpu_check.py, to estimate the paper scale's hours",
    )
    reproduce.add_argument(
        "--scale", default=None, help="smoke, laptop (default) or paper; also $SLOTLAB_SCALE"
    )
    reproduce.add_argument(
        "--seeds", type=int, default=None, help="seeds per point (default: the experiment's)"
    )
    reproduce.add_argument(
        "--workers", type=int, default=None, help="parallel processes (default as for sweep)"
    )
    reproduce.add_argument("--runs", default=None, help="runs folder (default: $SLOTLAB_RUNS or ./runs)")
    reproduce.add_argument("--out", default=str(REPRODUCTIONS), help="where reproductions are written")
    reproduce.add_argument("--device", default="auto", help="auto (CUDA when available), cpu or cuda")
    reproduce.add_argument("--no-progress", action="store_true", help="no progress bar")
    data = sub.add_parser(
        "data",
        help="check the MNIST, Fashion-MNIST and CIFAR-10 files against torchvision's MD5s, or download them",
    )
    actions = data.add_subparsers(dest="action", required=True, parser_class=_Parser)
    for action, text in (
        ("check", "name every dataset file that is missing or damaged"),
        ("prepare", "download what is missing (online), then check"),
    ):
        command = actions.add_parser(action, help=text)
        command.add_argument("root", nargs="?", help="data root (default: $SLOTLAB_DATA, else data/)")
        command.add_argument(
            "--dataset",
            action="append",
            choices=list(dataset_files.FILES),
            help="only this dataset (repeatable)",
        )
    return parser


def _config_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per common ``RunConfig`` field and per method option, plus the runtime flags of train and sweep."""
    defaults = RunConfig()
    entries = [
        (f.name, getattr(defaults, f.name), FIELD_HELP[f.name], CHOICES.get(f.name))
        for f in fields(RunConfig)
        if f.name != "options"
    ]
    entries += [
        (name, spec.default, f"{', '.join(methods_with_option(name))}: {spec.help}", spec.choices)
        for name, spec in option_specs().items()
    ]
    for name, default, help_text, choices in entries:
        shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
        # a bare boolean flag (--augment) means true; --augment false still works
        flag_only = {"nargs": "?", "const": "true"} if isinstance(default, bool) else {}
        parser.add_argument(
            f"--{name.replace('_', '-')}",
            dest=name,
            default=None,
            metavar=name.upper(),
            choices=choices,
            help=f"{help_text} (default: {shown})",
            **flag_only,
        )
    parser.add_argument(
        "--recipe",
        default=None,
        choices=list(RECIPES),
        help="a named training recipe (imagenet: lr 0.256, momentum 0.875, wd 3.05e-5 not on BatchNorm, 5 warm-up "
        "epochs, cosine, label smoothing 0.1, batch 256, 100 epochs); flags given override its fields",
    )
    parser.add_argument("--seed", type=int, default=None, help="set all five seeds at once")
    parser.add_argument("--runs", default=None, help="runs folder (default: $SLOTLAB_RUNS or ./runs)")
    parser.add_argument("--device", default="auto", help="auto (CUDA when available), cpu or cuda")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _given_values(args: argparse.Namespace) -> dict:
    """The config fields given on the command line (``--seed`` filling the seeds not given one by one)."""
    names = [f.name for f in fields(RunConfig) if f.name != "options"] + list(option_specs())
    values = {name: getattr(args, name) for name in names if getattr(args, name) is not None}
    if args.recipe is not None:
        values = {**RECIPES[args.recipe], **values}
    if args.seed is not None:
        for name in SEED_FIELDS:
            values.setdefault(name, args.seed)
    return values


def _train(args: argparse.Namespace) -> int:
    # the method's own defaults (laperm: Adam) fill what is not given
    config = RunConfig(**_given_values(args))
    # torchrun's rank (the process group itself starts in load_or_run): rank 0 alone prints
    primary = int(os.environ.get("RANK", "0")) == 0
    if primary:
        print(f"run {config.name} -> {run_dir(config, args.runs)}")
    try:
        result = load_or_run(
            config, root=args.runs, device=args.device, progress=False if args.no_progress else None
        )
    finally:
        distributed.shutdown()
    if primary:
        table = result.summary()
        print(table.to_string(float_format=lambda v: f"{v:.4f}"))
        print(f"({table.attrs['note']}; run folder {result.path})")
    return 0


def _sweep(args: argparse.Namespace) -> int:
    grid = parse_assignments(args.grid)
    points = []
    for text in args.point:
        assignments = parse_assignments(text.split())
        if any(len(v) > 1 for v in assignments.values()):
            raise SlotlabError(f"--point {text!r} must give one value per field; use --grid for alternatives")
        points.append({k: v[0] for k, v in assignments.items()})
    result = sweep(
        grid,
        points,
        base=_given_values(args),
        root=args.runs,
        workers=args.workers,
        device=args.device,
        progress=False if args.no_progress else None,
        wait_for_locks=not args.no_wait,
    )
    table = result.table()
    with pd.option_context("display.max_colwidth", 80, "display.width", 200):
        print(table.drop(columns="error").to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    for point in result.points:
        if point.status in ("failed", "locked"):
            print(f"point {point.index} {point.overrides}: {point.status}: {point.error}", file=sys.stderr)
    counts = table["status"].value_counts().to_dict()
    print("sweep: " + ", ".join(f"{n} {s}" for s, n in counts.items()) + f" (runs folder {result.root})")
    return 1 if result.failed else 0


def _export(args: argparse.Namespace) -> None:
    run = open_run(args.run, args.runs)
    for line in export_run(run.model("best"), run.config, run.path / "export"):
        print(line)


def _reproduce(args: argparse.Namespace) -> int:
    if args.list:
        listing = experiment_list(args.out, args.throughput)
        # the counts and hours first: the figure and question columns are wide enough to push them off a terminal
        wide = ["in the paper", "question"]
        empty = [c for c in listing.columns if c.endswith(" measured") and not listing[c].astype(bool).any()]
        reasons = listing.loc[listing["status"] != "runs", ["name", "status"]]
        listing["status"] = listing["status"].where(listing["status"] == "runs", "cannot run yet")
        with pd.option_context("display.width", 250):
            print(listing.drop(columns=wide + empty).to_string(index=False))
        print()
        for name, status in reasons.itertuples(index=False):
            print(f"{name} {status}")
        print("Each experiment's figure and question: slotlab.reproduce.experiment_list() in Python.")
        return 0
    if not args.name:
        raise SlotlabError("reproduce needs an experiment name, or --list to see them")
    result = reproduce(
        args.name,
        scale=args.scale,
        seeds=args.seeds,
        workers=args.workers,
        root=args.runs,
        out=args.out,
        device=args.device,
        progress=False if args.no_progress else None,
    )
    with pd.option_context("display.width", 250):
        print(result.summary.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
        if len(result.verdicts):
            print(
                result.verdicts.drop(columns="tolerance")
                .fillna({"within tolerance": "not judged"})
                .to_string(index=False, float_format=lambda v: f"{v:.2f}")
            )
            if result.caveat:
                print(f"({result.caveat})")
    for line in result.failed:
        print(f"not finished: {line}", file=sys.stderr)
    print(f"(written to {result.folder})")
    return 1 if result.failed else 0


def _data(args: argparse.Namespace) -> int:
    root = Path(args.root).expanduser() if args.root else data_root()
    run = dataset_files.check if args.action == "check" else dataset_files.prepare
    statuses = run(root, args.dataset)
    print(dataset_files.format_report(statuses, root))
    return 0 if dataset_files.all_ok(statuses) else 1


def main(argv: list[str] | None = None) -> int:
    """Run one command; every failure a user can cause or meet ends in one line on stderr and its exit code
    (``slotlab.errors``); ``--debug`` or ``SLOTLAB_DEBUG=1`` shows the full traceback instead."""
    args = _parser().parse_args(argv)
    debug = args.debug or os.environ.get("SLOTLAB_DEBUG", "") not in ("", "0")
    command = {"train": _train, "sweep": _sweep, "export": _export, "reproduce": _reproduce, "data": _data}[
        args.command
    ]
    try:
        return command(args) or 0
    except SlotlabError as error:
        if debug:
            raise
        print(f"slotlab: error: {error}", file=sys.stderr)
        return error.exit_code
    except OSError as error:
        if debug:
            raise
        print(f"slotlab: error: {disk_error(error)}", file=sys.stderr)
        return DiskError.exit_code
    except KeyboardInterrupt:
        if debug:
            raise
        resumes = (
            " (a run resumes from its last finished epoch)" if args.command in ("train", "sweep") else ""
        )
        print(f"\nslotlab: interrupted; run the same command again to continue{resumes}", file=sys.stderr)
        return INTERRUPTED_EXIT_CODE
