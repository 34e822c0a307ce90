"""Command line: ``python -m slotlab train ...``, ``python -m slotlab sweep --grid ...`` and
``python -m slotlab export RUN``.

Flags of ``train`` (and the base config of ``sweep``) are generated from ``RunConfig`` (one flag per field, help
text next to the field), so the CLI and the Python API cannot drift apart. ``train`` runs unchanged under
``torchrun --nproc-per-node=N -m slotlab train ...`` (DistributedDataParallel; rank 0 prints and writes).
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import fields

from slotlab.config import CHOICES, FIELD_HELP, RunConfig
from slotlab.errors import SlotlabError


def _catalogue() -> str:
    from slotlab.data import DATASETS
    from slotlab.methods import METHODS
    from slotlab.models import MODELS

    lines = ["methods:"] + [f"  {n:<14} {m.description}" for n, m in METHODS.items()]
    lines += ["models:"] + [f"  {n:<14} {d}" for n, (_, d) in MODELS.items()]
    lines += ["datasets:"] + [f"  {n:<14} {d.description}" for n, d in DATASETS.items()]
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="slotlab", description="Study networks found inside random weights."
    )
    sub = parser.add_subparsers(dest="command", required=True)
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
    return parser


def _config_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per ``RunConfig`` field, plus the runtime flags shared by train and sweep."""
    defaults = RunConfig()
    for f in fields(RunConfig):
        default = getattr(defaults, f.name)
        shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
        # a bare boolean flag (--augment) means true; --augment false still works
        flag_only = {"nargs": "?", "const": "true"} if isinstance(default, bool) else {}
        parser.add_argument(
            f"--{f.name.replace('_', '-')}",
            dest=f.name,
            default=None,
            metavar=f.name.upper(),
            choices=CHOICES.get(f.name),
            help=f"{FIELD_HELP[f.name]} (default: {shown})",
            **flag_only,
        )
    parser.add_argument("--seed", type=int, default=None, help="set all five seeds at once")
    parser.add_argument("--runs", default=None, help="runs folder (default: $SLOTLAB_RUNS or ./runs)")
    parser.add_argument("--device", default="auto", help="auto (CUDA when available), cpu or cuda")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _given_values(args: argparse.Namespace) -> dict:
    """The config fields given on the command line (``--seed`` filling the seeds not given one by one)."""
    values = {f.name: getattr(args, f.name) for f in fields(RunConfig) if getattr(args, f.name) is not None}
    if args.seed is not None:
        for name in ("weight_seed", "score_seed", "data_seed", "sample_seed", "split_seed"):
            values.setdefault(name, args.seed)
    return values


def _train(args: argparse.Namespace) -> int:
    from slotlab import distributed
    from slotlab.methods import method_config
    from slotlab.runs import load_or_run, run_dir

    # the method's own defaults (laperm: Adam) fill what is not given
    config = method_config(**_given_values(args))
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
    import pandas as pd

    from slotlab.sweep import parse_assignments, sweep

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
    from slotlab.checkpoint import atomic_save
    from slotlab.export import bits_per_connection, save_compact, to_plain
    from slotlab.methods import MASK_METHODS
    from slotlab.runs import open_run

    run = open_run(args.run, args.runs)
    model = run.model("best")
    plain = to_plain(model)
    out = run.path / "export"
    atomic_save({"config": run.config.to_dict(), "state_dict": plain.state_dict()}, out / "plain.pt")
    print(
        f"wrote {out / 'plain.pt'} (a plain PyTorch state dict; build the model with method dense to load it)"
    )
    if run.config.method == "slots":
        packed = save_compact(model, run.config, out / "compact.pt")
        connections = sum(p.numel() for p in plain.parameters())
        print(
            f"wrote {out / 'compact.pt'}: {packed} bytes of selections "
            f"({bits_per_connection(run.config.k)} bits x {connections} connections) plus seeds and config"
        )
    elif run.config.method in MASK_METHODS:
        stored = save_compact(model, run.config, out / "compact.pt")
        connections = sum(p.numel() for p in plain.parameters() if p.dim() > 1)
        ternary = (
            " (biprop: a ternary network, weights in {-alpha, 0, +alpha})"
            if run.config.method == "biprop"
            else ""
        )
        print(
            f"wrote {out / 'compact.pt'}: {stored} bytes of masks (1 bit x {connections} connections) and "
            f"kept weights the seed does not regenerate, plus seeds and config{ternary}"
        )


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return {"train": _train, "sweep": _sweep, "export": _export}[args.command](args) or 0
    except SlotlabError as error:
        print(f"slotlab: error: {error}", file=sys.stderr)
        return 2
