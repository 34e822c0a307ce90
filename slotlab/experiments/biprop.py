"""Biprop / Multi-Prize Lottery Tickets (Diffenderfer & Kailkhura, ICLR 2021): its figures and tables as experiments.

MPT-1/32 keeps binary weights (alpha * sign(W) under an Edge-Popup mask) and real activations; MPT-1/1 adds sign
activations with BatchNorm; "+BN" learns BatchNorm's scale and shift. The numbers the paper and the authors'
README state are for VGG-Small, ResNet-18 and ImageNet networks; its small-model results are figures. Settings
(CIFAR-10 subsets and the Lenet-300-100 stand-in on the CPU scales) come from ``slotlab.experiments.edge_popup``.
"""

from __future__ import annotations

from slotlab.experiments.base import Experiment, Point, Published
from slotlab.experiments.edge_popup import (
    BEST_TEST,
    LAPTOP_HEAVY,
    LAPTOP_VAL_SIZE,
    MODEL_NAMES,
    cifar,
    cifar_dense,
    dense_baseline,
    densities,
    depth_models,
    resnet_stand_in,
    stand_in,
    widths,
)
from slotlab.scales import Scale

PAPER = "Diffenderfer & Kailkhura 2021, Multi-Prize Lottery Ticket Hypothesis (Biprop)"
README = "MPT README results table"
# the prune rates of the authors' sweep script, as fractions kept
SWEEP = (0.1, 0.2, 0.4, 0.5, 0.6, 0.8)
# laptop scale of VGG-Small: at 2 000 images for 4 epochs, validated on 5 000, a seed's three runs would take about
# an hour of one core, half of it in evaluation (projected from one timed 1 000-image epoch of each network)
LAPTOP_VGG_SMALL = {"train_size": 1000, "val_size": LAPTOP_VAL_SIZE, "epochs": 3}


def _mpt_1_32(scale: Scale) -> list[Point]:
    """ResNet-18 at 80 % pruned, BatchNorm frozen and learned; ResNet-20 on a CIFAR-10 subset on the CPU scales."""
    if scale.is_paper:
        data, tag = {**cifar(scale, "resnet18"), "weight_decay": 5e-4, "batch_size": 256}, ""
    else:
        data, tag = resnet_stand_in(scale), " (ResNet-20 stand-in)"
    return [
        Point(f"MPT-1/32{tag}", 0.2, "biprop", {"density": 0.2, **data}),
        Point(f"MPT-1/32 +BN{tag}", 0.2, "biprop", {"density": 0.2, "learned_bn": True, **data}),
        Point(
            f"MPT-1/32 +BN shift only{tag}",
            0.2,
            "biprop",
            {"density": 0.2, "learned_bn": True, "bn_bias_only": True, **data},
        ),
    ]


def _mpt_1_1(scale: Scale) -> list[Point]:
    """MPT-1/1 (binary activations) against the fraction kept: Conv-2 to Conv-8 at paper scale."""
    if scale.is_paper:
        return [
            Point(
                f"{MODEL_NAMES[m]}, MPT-1/1",
                d,
                "biprop",
                {"density": d, "binary_activations": True, **cifar(scale, m)},
            )
            for m in depth_models(scale)
            for d in SWEEP
        ]
    setting, tag = stand_in(scale, "conv4")
    return [
        Point(f"MPT-1/1{tag}", d, "biprop", {"density": d, "binary_activations": True, **setting})
        for d in scale.densities
    ]


def _going_deeper(scale: Scale) -> list[Point]:
    points = []
    for model in depth_models(scale):
        data = cifar(scale, model)
        if scale.name == "laptop":  # a Biprop Conv-4 epoch of 5 000 images on a CPU is about 3 minutes
            data |= {**LAPTOP_HEAVY, "val_size": LAPTOP_VAL_SIZE}
        points += [
            Point(f"{MODEL_NAMES[model]}, MPT-1/32", d, "biprop", {"density": d, **data})
            for d in densities(scale, SWEEP, (0.1, 0.5))
        ]
        points.append(Point(f"{MODEL_NAMES[model]}, dense", 1.0, "dense", cifar_dense(scale, data)))
    return points


def _width(scale: Scale) -> list[Point]:
    """MPT-1/32 and MPT-1/1 at half the weights against width, with the dense network at each width."""
    models = depth_models(scale) if scale.is_paper else (None,)
    points = []
    for model in models:
        setting, tag = (cifar(scale, model), "") if model else stand_in(scale, "conv4")
        name = f"{MODEL_NAMES[model]}, " if not tag else ""  # a stand-in's series carry its tag instead
        for label, extra in (("MPT-1/32", {}), ("MPT-1/1", {"binary_activations": True})):
            points += [
                Point(f"{name}{label}{tag}", w, "biprop", {"density": 0.5, "width": w, **extra, **setting})
                for w in widths(scale, (0.5, 1.0, 1.5, 2.0))
            ]
        points += [
            Point(f"{name}dense{tag}", w, "dense", {**dense_baseline(scale), "width": w, **setting})
            for w in widths(scale, (0.5, 1.0, 1.5, 2.0))
        ]
    return points


def _vgg_small(scale: Scale) -> list[Point]:
    """The README's VGG-Small rows: MPT-1/32 at 95 % pruned, MPT-1/1 (and +BN) on the x1.25 network at 75 %."""
    plain, wide = cifar(scale, "vgg-small"), cifar(scale, "vgg-small-wide")
    if scale.name == "laptop":  # a Biprop VGG-Small epoch of 5 000 images on a CPU is about 4 minutes
        plain, wide = ({**d, **LAPTOP_VGG_SMALL} for d in (plain, wide))
    binary = {"binary_activations": True}
    return [
        Point("MPT-1/32", 0.05, "biprop", {"density": 0.05, **plain}),
        Point("MPT-1/1, width x1.25", 0.25, "biprop", {"density": 0.25, **binary, **wide}),
        Point(
            "MPT-1/1 +BN, width x1.25",
            0.25,
            "biprop",
            {"density": 0.25, "learned_bn": True, **binary, **wide},
        ),
    ]


def _density_sweep(scale: Scale) -> list[Point]:
    return [
        *(Point("biprop", d, "biprop", {"density": d}) for d in scale.densities),
        Point("dense", 1.0, "dense", dense_baseline(scale)),
    ]


def _vs_edge_popup(scale: Scale) -> list[Point]:
    setting, tag = stand_in(scale, "conv4")
    ds = SWEEP if scale.is_paper else scale.densities
    return [
        Point(f"{label}{tag}", d, method, {"density": d, **setting})
        for label, method in (("biprop (MPT-1/32)", "biprop"), ("edge-popup", "edge-popup"))
        for d in ds
    ]


EXPERIMENTS = [
    Experiment(
        name="biprop/mpt-1-32",
        paper=PAPER,
        in_paper="results table: MPT-1/32 on CIFAR-10, ResNet-18 at 80 % of weights pruned, with and without "
        "learned BatchNorm (+BN)",
        question="How accurate is a binary-weight subnetwork of a random ResNet-18, and does learning "
        "BatchNorm help?",
        grid=_mpt_1_32,
        published=(
            Published("MPT-1/32", 0.2, 94.66, f"{README} (CIFAR-10, ResNet-18, 80 % pruned)", BEST_TEST),
            Published("MPT-1/32 +BN", 0.2, 94.8, f"{README} (CIFAR-10, ResNet-18, 80 % pruned)", BEST_TEST),
        ),
        x_label="fraction of weights kept",
        note="paper scale: ResNet-18 (CIFAR form) with scaled Kaiming normal, SGD lr 0.1 cosine, weight decay "
        "5e-4, batch 256, 100 epochs. The CPU scales measure ResNet-20 on a CIFAR-10 subset (a network with "
        "BatchNorm, so that +BN changes something; laptop: 2 000 images, 4 epochs), under stand-in series names. "
        "The abstract's claim (1.78 points over the full-precision counterpart) comes without the counterpart's "
        "number. '+BN shift only' learns "
        "BatchNorm's shift alone (the released --bn_bias_only; no published number).",
    ),
    Experiment(
        name="biprop/mpt-1-1",
        paper=PAPER,
        in_paper="figure: MPT-1/1 (binary weights and sign activations) against % of weights kept, Conv-2 to "
        "Conv-8 on CIFAR-10",
        question="How accurate are fully binary (weights and activations) subnetworks of random networks?",
        grid=_mpt_1_1,
        x_label="fraction of weights kept",
        note="a figure whose values the paper's text does not state: no published numbers (the stated MPT-1/1 "
        "numbers are VGG-Small's, biprop/vgg-small, and ImageNet's, biprop/imagenet). Adam lr 0.1 as the "
        "authors' BinAct configs. CPU scales: Lenet-300-100 on MNIST as a stand-in.",
    ),
    Experiment(
        name="biprop/going-deeper",
        paper=PAPER,
        in_paper="figure: MPT-1/32 on Conv-2 to Conv-8 (CIFAR-10) against % of weights kept, with dense "
        "full-precision baselines",
        question="Do binary-weight subnetworks overtake trained full-precision networks as depth grows?",
        grid=_going_deeper,
        x_label="fraction of weights kept",
        note="a figure whose values the paper's text does not state: no published numbers (IWR's re-runs of "
        "Biprop are the published numbers of iwr/density-conv2 ... conv8). Paper scale: scaled Kaiming normal, "
        "100 epochs, the authors' prune rates; CPU scales: Conv-2 and Conv-4 on a CIFAR-10 subset (laptop: 2 000 "
        "images for 4 epochs, validated on 1 000, with dense baselines on the same subset).",
    ),
    Experiment(
        name="biprop/density-sweep",
        paper=PAPER,
        in_paper="prune-rate sweep (accuracy against % of weights kept) on the fully connected network of the "
        "authors' configs",
        question="How does a binary-weight subnetwork's accuracy depend on the fraction of weights kept?",
        grid=_density_sweep,
        x_label="fraction of weights kept",
        note="Lenet-300-100 on MNIST at every scale; no published numbers. Accuracy falls again as k nears 1 "
        "(keeping almost every random weight and binarising it), as the authors confirm in their issue #1.",
    ),
    Experiment(
        name="biprop/vs-edge-popup",
        paper=PAPER,
        in_paper="comparison with Edge-Popup at equal fractions of weights kept",
        question="Does binarising the kept weights (alpha * sign(W)) cost accuracy against Edge-Popup's "
        "real-valued ones?",
        grid=_vs_edge_popup,
        x_label="fraction of weights kept",
        note="no published numbers. Paper scale: Conv-4 on CIFAR-10 at the authors' prune rates; CPU scales: "
        "Lenet-300-100 on MNIST (the same runs as the two density sweeps).",
    ),
    Experiment(
        name="biprop/width",
        paper=PAPER,
        in_paper="figure: MPT-1/32 and MPT-1/1 against network width (x0.5 ... x2)",
        question="Do binary subnetworks overtake trained full-precision networks as width grows?",
        grid=_width,
        x_label="width multiplier",
        log_x=True,
        note="a figure without stated numbers: no published values. Paper scale: Conv-2 to Conv-8 on CIFAR-10 at "
        "50 % pruned, widths 0.5 to 2; CPU scales: Lenet-300-100 on MNIST at widths 0.5, 1, 2.",
    ),
    Experiment(
        name="biprop/vgg-small",
        paper=PAPER,
        in_paper="results table: VGG-Small on CIFAR-10 (MPT-1/32 at 95 % pruned; MPT-1/1 and +BN at width "
        "x1.25, 75 % pruned)",
        question="How accurate are binary subnetworks of a random VGG-Small?",
        grid=_vgg_small,
        published=(
            Published("MPT-1/32", 0.05, 91.48, f"{README} (CIFAR-10, VGG-Small, 95 % pruned)", BEST_TEST),
            Published("MPT-1/1, width x1.25", 0.25, 89.11, f"{README} (CIFAR-10, 75 % pruned)", BEST_TEST),
            Published("MPT-1/1 +BN, width x1.25", 0.25, 91.9, f"{README} (CIFAR-10, 75 % pruned)", BEST_TEST),
        ),
        x_label="fraction of weights kept",
        note="paper scale: lr 0.1 with a cosine schedule for 100 epochs, SGD for MPT-1/32 and Adam for MPT-1/1 "
        "(sign activations, on the x1.25 network) as the authors' configs. Laptop scale trains on 1 000 "
        "CIFAR-10 images for 3 epochs, validated on 1 000 (a Biprop VGG-Small epoch on a CPU is minutes): a "
        "check that the networks learn, far below the published budget.",
    ),
    Experiment(
        name="biprop/imagenet",
        paper=PAPER,
        in_paper="results table: ImageNet, Wide ResNet-50 (MPT-1/32, 80 % pruned) and Wide ResNet-34 (MPT-1/1, "
        "60 % pruned), with and without +BN",
        question="Do multi-prize tickets scale to ImageNet?",
        grid=None,
        missing="ImageNet training at scale on a GPU and a Wide ResNet-34 with binary activations",
        published=(
            Published("MPT-1/32", "Wide ResNet-50", 72.67, f"{README} (ImageNet, 80 % pruned)", BEST_TEST),
            Published(
                "MPT-1/32 +BN", "Wide ResNet-50", 74.03, f"{README} (ImageNet, 80 % pruned)", BEST_TEST
            ),
            Published("MPT-1/1", "Wide ResNet-34", 45.06, f"{README} (ImageNet, 60 % pruned)", BEST_TEST),
            Published("MPT-1/1 +BN", "Wide ResNet-34", 52.07, f"{README} (ImageNet, 60 % pruned)", BEST_TEST),
        ),
        x_label="model",
    ),
]
