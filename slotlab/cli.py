"""Command line: ``python -m slotlab train ...`` and ``python -m slotlab export RUN``.

Flags of ``train`` are generated from ``RunConfig`` (one flag per field, help text next to the field), so the CLI
and the Python API cannot drift apart.
"""

from __future__ import annotations

import argparse
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
    defaults = RunConfig()
    for f in fields(RunConfig):
        default = getattr(defaults, f.name)
        shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
        train.add_argument(
            f"--{f.name.replace('_', '-')}",
            dest=f.name,
            default=None,
            metavar=f.name.upper(),
            choices=CHOICES.get(f.name),
            help=f"{FIELD_HELP[f.name]} (default: {shown})",
        )
    train.add_argument("--seed", type=int, default=None, help="set all five seeds at once")
    train.add_argument("--runs", default=None, help="runs folder (default: $SLOTLAB_RUNS or ./runs)")
    train.add_argument("--device", default="auto", help="auto (CUDA when available), cpu or cuda")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    export = sub.add_parser("export", help="write a run's found network: a plain model and a compact file")
    export.add_argument("run", help="run folder (or its hash)")
    export.add_argument("--runs", default=None, help="runs folder to look the hash up in")
    return parser


def _train(args: argparse.Namespace) -> None:
    from slotlab.runs import load_or_run, run_dir

    values = {f.name: getattr(args, f.name) for f in fields(RunConfig) if getattr(args, f.name) is not None}
    if args.seed is not None:
        for name in ("weight_seed", "score_seed", "data_seed", "sample_seed", "split_seed"):
            values.setdefault(name, args.seed)
    config = RunConfig(**values)
    print(f"run {config.name} -> {run_dir(config, args.runs)}")
    result = load_or_run(config, root=args.runs, device=args.device, progress=not args.no_progress or None)
    table = result.summary()
    print(table.to_string(float_format=lambda v: f"{v:.4f}"))
    print(f"({table.attrs['note']}; run folder {result.path})")


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
        {"train": _train, "export": _export}[args.command](args)
    except SlotlabError as error:
        print(f"slotlab: error: {error}", file=sys.stderr)
        return 2
    return 0
