"""Iterative Weight Recycling (Gorbett & Whitley 2023, arXiv 2303.15953): its figures as experiments.

The published numbers are those hard-coded in the authors' plotting scripts (mattgorb/parameter_tiling_and_recycling
at 420a2c8, ``figures/*.py``), i.e. the paper's figures: Edge-Popup (signed constant) and Biprop (scaled Kaiming
normal) re-run for 250 epochs, each with and without recycling, best test epoch. The figures plot "% of weights
pruned"; x here is the fraction kept (1 - pruned), as slotlab's ``density``. At paper scale each method takes
the authors' config for that model; the CPU scales use the Lenet-300-100 stand-in of
``slotlab.experiments.edge_popup`` (recycling every epoch, as their runs are 6 epochs long).
"""

from __future__ import annotations

from typing import Any

from slotlab.experiments.base import Experiment, Point, Published
from slotlab.experiments.edge_popup import MODEL_NAMES, dense_baseline, stand_in
from slotlab.scales import Scale

PAPER = "Gorbett & Whitley 2023, Randomly Initialized Subnetworks with Iterative Weight Recycling (IWR)"
FIGURE_DEPTH = "IWR figures/conv2to8_all.py data (accuracy against % pruned)"
FIGURE_PARAMS = "IWR figures/params.py data (high sparsity, with IteRand)"
PROTOCOL = "best test epoch (mean over seeds where error bars are drawn)"
PRUNED = (20, 40, 50, 60, 80, 90)  # the figures' x axis: % of weights pruned
KEPT = {20: 0.8, 40: 0.6, 50: 0.5, 60: 0.4, 80: 0.2, 90: 0.1}

EP, BP, EPR, BPR, DENSE, ITERAND = (
    "Edge-Popup",
    "Biprop",
    "Edge-Popup + recycling",
    "Biprop + recycling",
    "learned (dense)",
    "IteRand",
)

# accuracy at 20, 40, 50, 60, 80, 90 % pruned, per model and method; the dense baseline is one number
DEPTH_FIGURE: dict[str, dict[str, tuple[float, ...]]] = {
    "conv2": {
        EP: (70.06, 78.6, 79.69, 79.1, 75.15, 64.05),
        BP: (64.1, 78.3, 79.56, 79.98, 77.9, 70.1),
        EPR: (81.05, 81.6, 81.68, 81.12, 79.06, 70.22),
        BPR: (80.28, 81.2, 81.36, 81.36, 80.23, 76.9),
    },
    "conv4": {
        EP: (77.6, 86.74, 86.67, 86.43, 83.28, 74.42),
        BP: (74.71, 85.9, 87.42, 87.2, 85.34, 79.0),
        EPR: (88.95, 88.9, 88.5, 88.15, 86.9, 79.78),
        BPR: (88.05, 88.8, 88.91, 88.64, 87.75, 84.3),
    },
    "conv6": {
        EP: (83.0, 89.33, 89.53, 89.1, 85.4, 79.57),
        BP: (78.2, 88.9, 89.52, 90.25, 87.5, 82.38),
        EPR: (91.1, 91.2, 90.9, 90.4, 88.6, 83.2),
        BPR: (90.2, 90.8, 90.9, 90.6, 90.0, 85.5),
    },
    "conv8": {
        EP: (84.39, 90.15, 90.28, 90.5, 86.9, 83.6),
        BP: (76.59, 89.13, 90.35, 90.54, 89.11, 84.84),
        EPR: (91.15, 91.5, 91.36, 90.95, 89.87, 86.93),
        BPR: (90.15, 91.0, 91.6, 91.2, 90.55, 86.4),
    },
}
DENSE_FIGURE = {"conv2": 79.9, "conv4": 87.0, "conv6": 89.0, "conv8": 89.41}

# figures/conv_width_all.py: 50 % pruned, width factors 0.1, 0.25, 0.5, 1
WIDTHS = (0.1, 0.25, 0.5, 1.0)
WIDTH_FIGURE: dict[str, dict[str, tuple[float, ...]]] = {
    "conv2": {
        BP: (47.2, 64.55, 74.69, 79.56),
        BPR: (52.55, 68.8, 76.66, 81.36),
        EP: (48.1, 64.52, 73.65, 79.69),
        EPR: (53.4, 70.33, 77.0, 81.68),
        DENSE: (58.5, 72.49, 77.55, 79.9),
    },
    "conv4": {
        BP: (50.4, 73.23, 82.6, 87.42),
        BPR: (59.64, 78.51, 86.5, 88.91),
        EP: (50.73, 73.34, 82.08, 86.67),
        EPR: (59.82, 78.92, 85.63, 88.5),
        DENSE: (67.26, 81.13, 84.96, 86.66),
    },
    "conv6": {
        BP: (56.9, 77.84, 86.23, 89.52),
        BPR: (65.0, 80.9, 88.43, 90.9),
        EP: (57.3, 78.48, 86.24, 89.53),
        EPR: (64.1, 83.0, 88.57, 90.9),
        DENSE: (72.48, 83.65, 87.54, 89.14),
    },
    "conv8": {
        BP: (61.2, 80.4, 87.33, 90.35),
        BPR: (69.0, 84.51, 89.67, 91.0),
        EP: (63.35, 81.5, 87.92, 90.28),
        EPR: (70.0, 85.5, 89.73, 91.36),
        DENSE: (71.56, 85.5, 87.99, 91.11),
    },
}

# figures/params.py: ResNet-18 on CIFAR-10 at 99, 98, 95 % pruned
RESNET18_KEPT = (0.01, 0.02, 0.05)
RESNET18_FIGURE = {
    BPR: (85.3, 90.9, 93.46),
    EP: (81.67, 89.85, 92.5),
    BP: (82.6, 89.57, 92.62),
    ITERAND: (80.25, 84.2, 86.52),
}
RESNET18_DENSE = 93.03
CONV4_98 = {BPR: 49.38, BP: 44.0, EP: 35.28, ITERAND: 41.6}  # the figure's Conv-4 panel at 98 % pruned


# --- the methods as the authors' configs set them -------------------------------------------------------------
def recipes(scale: Scale, model: str) -> dict[str, tuple[str, dict[str, Any]]]:
    """Per series: the method and its choices, as the IWR configs give them for ``model`` (at paper scale)."""
    if not scale.is_paper:
        return {
            EP: ("edge-popup", {"init": "sc"}),
            BP: ("biprop", {"init": "kn-scaled"}),
            EPR: ("edge-popup", {"init": "sc", "recycle_rate": 0.1, "recycle_every": 1}),
            BPR: ("biprop", {"init": "kn", "recycle_rate": 0.2, "recycle_every": 1}),
            ITERAND: ("edge-popup", {"init": "sc", "iterand_rate": 0.1, "recycle_every": 1}),
        }
    long = {"epochs": 250}
    ep_recycle = {"recycle_rate": 0.2, "recycle_every": 10} if model in ("conv6", "resnet18") else {}
    bp_recycle: dict[str, Any] = {"recycle_rate": 0.2, "recycle_every": 10}
    if model == "resnet18":  # r18-kn-biprop-recycle: 200 epochs, no round before epoch 50
        bp_recycle |= {"epochs": 200, "recycle_warmup": 50}
    return {
        EP: ("edge-popup", {"init": "sc", **long}),
        BP: ("biprop", {"init": "kn-scaled", **long}),
        EPR: ("edge-popup", {"init": "sc", "recycle_rate": 0.1, "recycle_every": 3, **long, **ep_recycle}),
        BPR: ("biprop", {"init": "kn", **long, **bp_recycle}),
        ITERAND: ("edge-popup", {"init": "sc", "iterand_rate": 0.1, "recycle_every": 1, **long}),
    }


def _point(scale: Scale, model: str, series: str, density: float, **extra: Any) -> Point:
    setting, tag = stand_in(scale, model)
    method, choices = recipes(scale, model)[series]
    return Point(f"{series}{tag}", density, method, {"density": density, **choices, **setting, **extra})


def _dense(scale: Scale, model: str, x: Any = 1.0) -> Point:
    setting, tag = stand_in(scale, model)
    return Point(f"{DENSE}{tag}", x, "dense", {**dense_baseline(scale), **setting})


# --- grids --------------------------------------------------------------------------------------------------
def _density_grid(model: str):
    def grid(scale: Scale) -> list[Point]:
        kept = [KEPT[p] for p in PRUNED] if scale.is_paper else [0.5, 0.1]
        points = [_point(scale, model, s, d) for s in (EP, BP, EPR, BPR) for d in kept]
        return [*points, _dense(scale, model)]

    return grid


def _density_experiment(model: str) -> Experiment:
    name = MODEL_NAMES[model]
    figure = DEPTH_FIGURE[model]
    published = [
        Published(series, KEPT[p], value, FIGURE_DEPTH, PROTOCOL)
        for series, values in figure.items()
        for p, value in zip(PRUNED, values, strict=True)
    ]
    published.append(Published(DENSE, 1.0, DENSE_FIGURE[model], FIGURE_DEPTH, PROTOCOL))
    return Experiment(
        name=f"iwr/density-{model}",
        paper=PAPER,
        in_paper=f"figure: {name} on CIFAR-10, accuracy against % of weights pruned (20 ... 90 %), Edge-Popup "
        f"and Biprop with and without recycling, and the learned dense network",
        question=f"Does recycling the values of high-score weights into low-score positions improve {name}'s "
        f"subnetworks, and most where few weights are kept?",
        grid=_density_grid(model),
        published=tuple(published),
        x_label="fraction of weights kept (the figure plots % pruned = 1 - x)",
        note="paper scale: the authors' configs (Edge-Popup signed constant, Biprop scaled Kaiming normal, 250 "
        "epochs; recycling 0.1 every 3 epochs for Edge-Popup (0.2 every 10 on Conv-6), 0.2 every 10 with "
        "unscaled Kaiming normal for Biprop; dense: SGD lr 0.01, 100 epochs). The CPU scales measure the "
        "Lenet-300-100 stand-in at 50 and 90 % pruned (the same runs for every depth).",
    )


def _width(scale: Scale) -> list[Point]:
    """50 % pruned against width: Conv-2 to Conv-8 at paper scale, the Lenet stand-in at 0.25 and 1 on the CPU."""
    models = tuple(WIDTH_FIGURE) if scale.is_paper else ("conv4",)
    points = []
    for model in models:
        setting, tag = stand_in(scale, model)
        name = f"{MODEL_NAMES[model]} " if not tag else ""  # a stand-in's series carry its tag instead
        for w in WIDTHS if scale.is_paper else (0.25, 1.0):
            for series in (EP, BP, EPR, BPR):
                method, choices = recipes(scale, model)[series]
                points.append(
                    Point(
                        f"{name}{series}{tag}",
                        w,
                        method,
                        {"density": 0.5, **choices, **setting, "width": w},
                    )
                )
            points.append(
                Point(f"{name}{DENSE}{tag}", w, "dense", {**dense_baseline(scale), **setting, "width": w})
            )
    return points


def _mask_landscape(scale: Scale) -> list[Point]:
    """Same weights (weight_seed 0), a different score seed (and data order) per seed."""
    setting, tag = stand_in(scale, "conv6")
    inits = {"edge-popup": "sc", "biprop": "kn-scaled"}
    epochs = {"epochs": 250} if scale.is_paper else {}
    return [
        Point(
            f"{method}{tag}",
            d,
            method,
            {"density": d, "init": init, "weight_seed": 0, **epochs, **setting},
        )
        for method, init in inits.items()
        for d in (0.5, 0.25)
    ]


def _donor_ablation(scale: Scale) -> list[Point]:
    _, tag = stand_in(scale, "conv4")
    points = []
    for base, recycled in ((EP, EPR), (BP, BPR)):
        points += [
            Point(f"{base}{tag}", "no recycling", *_choices(scale, base, 0.5)),
            Point(f"{base}{tag}", "top donors", *_choices(scale, recycled, 0.5)),
            Point(
                f"{base}{tag}",
                "next-lowest donors",
                *_choices(scale, recycled, 0.5, recycle_donor="next-lowest"),
            ),
        ]
    return points


def _choices(scale: Scale, series: str, density: float, model: str = "conv4", **extra: Any):
    p = _point(scale, model, series, density, **extra)
    return p.method, p.choices


def _recycle_rate(scale: Scale) -> list[Point]:
    _, tag = stand_in(scale, "conv4")
    rates = (0.05, 0.1, 0.2, 0.3) if scale.is_paper else (0.1, 0.2)
    method, plain = _choices(scale, EP, 0.5)
    _, recycled = _choices(scale, EPR, 0.5)
    return [
        Point(f"{EPR}{tag}", 0.0, method, plain),
        *(Point(f"{EPR}{tag}", r, method, {**recycled, "recycle_rate": r}) for r in rates),
    ]


def _recycle_frequency(scale: Scale) -> list[Point]:
    _, tag = stand_in(scale, "conv4")
    every = (1, 3, 10, 30) if scale.is_paper else (1, 2, 3)
    method, recycled = _choices(scale, EPR, 0.5)
    return [Point(f"{EPR}{tag}", f, method, {**recycled, "recycle_every": f}) for f in every]


def _iterand_resnet18(scale: Scale) -> list[Point]:
    kept = RESNET18_KEPT if scale.is_paper else (0.01, 0.05)
    points = [_point(scale, "resnet18", s, d) for s in (BPR, EP, BP, ITERAND) for d in kept]
    return [*points, _dense(scale, "resnet18")]


def _iterand_conv4(scale: Scale) -> list[Point]:
    return [_point(scale, "conv4", s, 0.02) for s in (BPR, BP, EP, ITERAND)]


def _norms(scale: Scale) -> list[Point]:
    return [*(_point(scale, "conv8", s, 0.5) for s in (EP, EPR, BP, BPR)), _dense(scale, "conv8")]


def _conv4_at_half(series: str, value: float, x: Any) -> Published:
    return Published(series, x, value, f"{FIGURE_DEPTH}, Conv-4 at 50 % pruned", PROTOCOL)


EXPERIMENTS = [
    *(_density_experiment(model) for model in ("conv2", "conv4", "conv6", "conv8")),
    Experiment(
        name="iwr/width",
        paper=PAPER,
        in_paper="figure: Conv-2 to Conv-8 at 50 % pruned against width (x0.1, x0.25, x0.5, x1)",
        question="How do recycling's gains change with the network's width?",
        grid=_width,
        published=tuple(
            Published(
                f"{MODEL_NAMES[model]} {series}", w, value, "IWR figures/conv_width_all.py data", PROTOCOL
            )
            for model, figure in WIDTH_FIGURE.items()
            for series, values in figure.items()
            for w, value in zip(WIDTHS, values, strict=True)
        ),
        x_label="width factor",
        log_x=True,
    ),
    Experiment(
        name="iwr/mask-landscape",
        paper=PAPER,
        in_paper="figure: mask landscapes of Conv-6, the same random weights trained from different score "
        "seeds (pairwise % same and Jaccard, per layer)",
        question="Do different score seeds on the same random weights find the same subnetwork, or many "
        "different ones of equal accuracy?",
        grid=_mask_landscape,
        seeds={"smoke": 2, "laptop": 3, "paper": 15},
        x_label="fraction of weights kept",
        note="the figure is slotlab.analysis.mask_landscape / pairwise_similarity / layer_similarity_curves "
        "over the runs of one point (weight_seed fixed at 0, the seed sets scores and data order); the default "
        "analysis reports their accuracy. The authors' CSVs (figures/tables/model_combos_*.csv, Conv-6, 250 "
        "epochs) give, over all pairs: Edge-Popup k = 0.5 50.77 % same, Jaccard 0.340 (15 models); k = 0.25 "
        "63.03 %, 0.150 (5 models); Biprop k = 0.5 57.84 %, 0.407; k = 0.25 67.96 %, 0.219; chance for two "
        "independent masks: 50 % / 0.333 and 62.5 % / 0.143; only the first conv layer is clearly above chance "
        "(Edge-Popup k = 0.5: 72.6 %, 0.57). Those are similarities, not accuracies, so they are not verdicts "
        "here; the script's jaccard_total divides I by I + U, report I / U.",
    ),
    Experiment(
        name="iwr/donor-ablation",
        paper=PAPER,
        in_paper="ablation: recycling the values of the highest-score weights against the next-lowest ones",
        question="Does it matter which values are copied into the lowest-score positions?",
        grid=_donor_ablation,
        published=(
            _conv4_at_half(EP, 86.67, "no recycling"),
            _conv4_at_half(EP, 88.5, "top donors"),
            _conv4_at_half(BP, 87.42, "no recycling"),
            _conv4_at_half(BP, 88.91, "top donors"),
        ),
        x_label="recycling",
        note="Conv-4 at 50 % pruned at paper scale (its two left points are the depth figure's Conv-4 numbers; "
        "the next-lowest ablation's numbers are not stated); Lenet-300-100 stand-in on the CPU scales.",
    ),
    Experiment(
        name="iwr/recycle-rate",
        paper=PAPER,
        in_paper="hyperparameter: the fraction of each layer recycled per round (the authors' configs use 0.1 "
        "and 0.2)",
        question="How much of each layer should a recycling round rewrite?",
        grid=_recycle_rate,
        published=(_conv4_at_half(EPR, 86.67, 0.0), _conv4_at_half(EPR, 88.5, 0.1)),
        x_label="recycle rate (fraction of each layer per round; 0: no recycling)",
        note="Edge-Popup on Conv-4 at 50 % pruned, every 3 epochs, at paper scale (rate 0 and 0.1 are the depth "
        "figure's Conv-4 points; the paper states no sweep of the rate); Lenet-300-100 stand-in on the CPU "
        "scales, every epoch.",
    ),
    Experiment(
        name="iwr/recycle-frequency",
        paper=PAPER,
        in_paper="hyperparameter: epochs between recycling rounds (the authors' configs use 3 and 10)",
        question="How often should weights be recycled?",
        grid=_recycle_frequency,
        published=(_conv4_at_half(EPR, 88.5, 3),),
        x_label="epochs between recycling rounds",
        log_x=True,
        note="Edge-Popup on Conv-4 at 50 % pruned, rate 0.1, at paper scale (every 3 epochs is the depth "
        "figure's Conv-4 point; the paper states no sweep of the frequency); Lenet-300-100 stand-in on the CPU "
        "scales.",
    ),
    Experiment(
        name="iwr/iterand-resnet18",
        paper=PAPER,
        in_paper="figure: ResNet-18 on CIFAR-10 at 99, 98 and 95 % pruned, recycling against Edge-Popup, "
        "Biprop and IteRand",
        question="At very high sparsity, does recycling beat IteRand's re-randomisation of pruned weights?",
        grid=_iterand_resnet18,
        published=(
            *(
                Published(series, d, value, FIGURE_PARAMS, PROTOCOL)
                for series, values in RESNET18_FIGURE.items()
                for d, value in zip(RESNET18_KEPT, values, strict=True)
            ),
            Published(DENSE, 1.0, RESNET18_DENSE, FIGURE_PARAMS, PROTOCOL),
        ),
        x_label="fraction of weights kept",
        log_x=True,
        note="IteRand as IWR re-implemented it (Edge-Popup, signed constant, each pruned weight redrawn with "
        "probability 0.1 every epoch). Biprop + recycling follows r18-kn-biprop-recycle (200 epochs, no round "
        "before epoch 50); the other ResNet-18 recipes are the Conv models' (250 epochs, weight decay 1e-4), "
        "ours where the authors' are not stated. Lenet-300-100 stand-in at 99 and 95 % pruned on the CPU scales.",
    ),
    Experiment(
        name="iwr/iterand-conv4",
        paper=PAPER,
        in_paper="figure: Conv-4 on CIFAR-10 at 98 % pruned, recycling against Edge-Popup, Biprop and IteRand",
        question="At 98 % pruned, how far ahead is Biprop with recycling?",
        grid=_iterand_conv4,
        published=tuple(Published(s, 0.02, v, FIGURE_PARAMS, PROTOCOL) for s, v in CONV4_98.items()),
        x_label="fraction of weights kept",
        note="the Conv-4 panel of the parameter-count figure (its other points are not stated here); "
        "Lenet-300-100 stand-in on the CPU scales.",
    ),
    Experiment(
        name="iwr/norms",
        paper=PAPER,
        in_paper="figure: per-layer norms of kept and pruned weights of Conv-8 (dense, Edge-Popup, Biprop, with "
        "and without recycling)",
        question="Does recycling raise the norm of the kept weights?",
        grid=_norms,
        x_label="fraction of weights kept",
        note="the figure is slotlab.analysis.kept_pruned_norms over these runs' found networks; the default "
        "analysis reports their accuracy. The figure's dense L1-pruned network needs magnitude pruning, which "
        "slotlab lacks. No published numbers. Lenet-300-100 stand-in on the CPU scales.",
    ),
    Experiment(
        name="iwr/imagenet",
        paper=PAPER,
        in_paper="ImageNet: ResNet-50 at a 70 % prune rate with recycling",
        question="Does recycling carry over to ImageNet?",
        grid=None,
        missing="ImageNet training at scale on a GPU (ResNet-50, 150 epochs)",
        note="summaries of the paper say 'similar or better' than prior methods with fewer parameters; the "
        "numbers were not retrieved",
    ),
]
