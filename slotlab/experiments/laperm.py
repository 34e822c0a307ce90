"""LaPerm / Train-by-Reconnect (Qiu & Suda, NeurIPS 2020, arXiv 2003.02570): its figures and tables as experiments.

The numbers stated are the "pretrain" table of the authors' README (ihsuy/Train-by-Reconnect), measured with their
Keras notebooks; most of its networks (Conv7, the BatchNorm/dropout Conv2/4/13, a Keras CIFAR ResNet-50, F1) are
not slotlab models, so those experiments are listed with what they need. The notebooks keep the best weights by
test accuracy; slotlab selects on a validation split unless ``protocol="best-test"``.
"""

from __future__ import annotations

from typing import Any

from slotlab.experiments.base import Experiment, Point, Published
from slotlab.experiments.edge_popup import cifar
from slotlab.scales import Scale

PAPER = "Qiu & Suda 2020, Train-by-Reconnect (LaPerm)"
README = "LaPerm README pretrain table"
PROTOCOL = "best test evaluation (the notebooks keep the best weights on the test set)"
ADAM = {"optimizer": "adam", "lr": 1e-3, "weight_decay": 0.0, "schedule": "cosine", "milestones": ()}


def _adam(scale: Scale, **choices: Any) -> dict[str, Any]:
    """Plain Adam on dense weights, LaPerm's inner optimiser alone; the Conv7 notebook's 45 epochs, batch 50 at
    paper scale (as the laperm recipe)."""
    paper = {"epochs": 45, "batch_size": 50} if scale.is_paper else {}
    return {**ADAM, **paper, **choices}


def _periods(scale: Scale) -> tuple[int, ...]:
    return {"smoke": (1, 20), "laptop": (1, 20, 100, 1000)}.get(scale.name, (1, 20, 100, 500, 1000))


def _sync_period(scale: Scale) -> list[Point]:
    periods = _periods(scale)
    return [
        *(Point("LaPerm", k, "laperm", {"sync_period": k}) for k in periods),
        Point("Adam (no sync)", max(periods), "dense", _adam(scale)),
    ]


def _vs_adam(scale: Scale) -> list[Point]:
    budgets = {"smoke": (1,), "laptop": (2, 6)}.get(scale.name, (15, 45))
    return [
        *(Point("LaPerm (k = 20)", e, "laperm", {"sync_period": 20, "epochs": e}) for e in budgets),
        *(Point("Adam", e, "dense", _adam(scale, epochs=e)) for e in budgets),
    ]


def _sparse_init(scale: Scale) -> list[Point]:
    return [
        Point(
            "LaPerm (k = 20)", d, "laperm", {"sync_period": 20, **({"init_density": str(d)} if d < 1 else {})}
        )
        for d in (1.0, 0.5, 0.1)
    ]


def _weight_agnostic_f2(scale: Scale) -> list[Point]:
    return [
        Point(
            "LaPerm, shared value 0.03",
            "F2",
            "laperm",
            {
                "model": "f2",
                "sync_period": 250,
                "shared_value": 0.03,
                "init_density": "1/15,1/7,1/3",
                "weight_decay": 2e-4,  # the notebook's Keras L2 of 1e-4 (Keras adds l * w^2, gradient 2 l w)
            },
        )
    ]


def _weight_agnostic_f1(scale: Scale) -> list[Point]:
    """The F1 notebook: 784-10, one shared value 0.08, 4/7 of the weights non-zero, a sync every 250 steps."""
    paper = {"epochs": 10, "batch_size": 128} if scale.is_paper else {}
    choices = {"model": "f1", "sync_period": 250, "shared_value": 0.08, "init_density": "4/7", **paper}
    return [Point("LaPerm, shared value 0.08", "F1", "laperm", choices)]


def _conv7(scale: Scale) -> list[Point]:
    """The Conv7 notebook: He-uniform, a sync every 20 steps, 45 epochs of batch 50 at paper scale; a 10 000-image
    MNIST subset on the laptop scale."""
    data = {"model": "conv7-lp", "init": "he-uniform", "sync_period": 20}
    if scale.is_paper:
        data |= {"epochs": 45, "batch_size": 50}
    elif scale.name == "laptop":
        data |= {"train_size": 10_000}
    return [Point("LaPerm", "Conv7", "laperm", data)]


LAPERM_CIFAR = {"conv2-lp": "Conv2", "conv4-lp": "Conv4", "conv13-lp": "Conv13"}


def _cifar10_convs(scale: Scale) -> list[Point]:
    """The CIFAR-10 notebooks: He-uniform, a sync every 1000 steps (once an epoch at batch 50), 125 epochs at
    paper scale; Conv2 and Conv4 on a training subset on the CPU scales."""
    models = LAPERM_CIFAR if scale.is_paper else {m: LAPERM_CIFAR[m] for m in ("conv2-lp", "conv4-lp")}
    paper = {"epochs": 125, "batch_size": 50} if scale.is_paper else {}
    return [
        Point(
            "LaPerm (k = 1000)",
            name,
            "laperm",
            {**cifar(scale, model), "init": "he-uniform", "sync_period": 1000, **paper},
        )
        for model, name in models.items()
    ]


def _vs_random_permutation(scale: Scale) -> list[Point]:
    """LaPerm against the same initial network with every row randomly permuted (nothing learned), dense and
    sparse (a tenth of the weights non-zero), with the paper's He-uniform init."""
    points = []
    for density in (1.0, 0.1):
        start = {"init": "he-uniform", **({"init_density": str(density)} if density < 1 else {})}
        points += [
            Point("LaPerm (k = 20)", density, "laperm", {"sync_period": 20, **start}),
            Point("random permutation", density, "random-permutation", start),
        ]
    return points


def _weight_profiles(scale: Scale) -> list[Point]:
    return [
        Point("dense (SGD)", "Lenet-300-100", "dense", {}),
        Point("dense (Adam)", "Lenet-300-100", "dense", _adam(scale)),
        Point("LaPerm (k = 20)", "Lenet-300-100", "laperm", {"sync_period": 20}),
    ]


EXPERIMENTS = [
    Experiment(
        name="laperm/sync-period",
        paper=PAPER,
        in_paper="analysis: the effect of the sync period k (steps between permutation syncs)",
        question="How often must the inner optimiser's weights be pulled back to a permutation of their initial "
        "values?",
        grid=_sync_period,
        x_label="sync period k (optimiser steps)",
        log_x=True,
        note="Lenet-300-100 on MNIST at every scale, with plain Adam as the reference; each run records the "
        "fraction of connections moved per sync (slotlab.laperm.moved_records). The paper's sync-period "
        "results are not stated as numbers in its text (the README uses k = 20 ... 1200 per model): no "
        "published numbers.",
    ),
    Experiment(
        name="laperm/vs-adam",
        paper=PAPER,
        in_paper="claim (abstract): LaPerm trains as fast and as accurately as Adam from a dense random init",
        question="At equal epochs, does training by reconnecting match training the weights with Adam?",
        grid=_vs_adam,
        x_label="training epochs",
        note="Lenet-300-100 on MNIST; the epoch budgets are ours (paper scale: 15 and the Conv7 notebook's 45, "
        "batch 50). The paper's curves are figures: no published numbers.",
    ),
    Experiment(
        name="laperm/sparse-init",
        paper=PAPER,
        in_paper="Sec. 5.4 idea: a random sparse init, its zeros relocated by the permutations",
        question="Does LaPerm still train when most initial weights are zero and only their positions can move?",
        grid=_sparse_init,
        x_label="fraction of weights non-zero at init",
        log_x=True,
        note="Lenet-300-100 on MNIST at every scale; the published sparse-init numbers are the CIFAR-10 "
        "ResNet-50's (laperm/resnet50-pruned).",
    ),
    Experiment(
        name="laperm/vs-random-permutation",
        paper=PAPER,
        in_paper="baseline: the learned permutation against a random permutation of each row (no learning)",
        question="How much of LaPerm's accuracy comes from the learned order, rather than from the values a "
        "row holds?",
        grid=_vs_random_permutation,
        x_label="fraction of weights non-zero at init",
        log_x=True,
        note="Lenet-300-100 on MNIST at every scale, He-uniform init (the paper's). The random permutation is one "
        "epoch of evaluation (nothing trains). Every LaPerm run also records the fraction of connections that "
        "moved at each sync (slotlab.laperm.moved_records). No published numbers.",
    ),
    Experiment(
        name="laperm/weight-agnostic-f2",
        paper=PAPER,
        in_paper="README pretrain table: weight-agnostic F2 (784-128-64-10, one shared value 0.03, 92 % zeros)",
        question="How accurate is a network whose weights all share one value, trained only by moving its "
        "zeros?",
        grid=_weight_agnostic_f2,
        published=(Published("LaPerm, shared value 0.03", "F2", 78.14, README, PROTOCOL),),
        x_label="model",
        note="the F1/F2 notebook: sync every 250 steps, kept fractions 1/15, 1/7, 1/3 per layer, Adam, 25 "
        "epochs at paper scale",
    ),
    Experiment(
        name="laperm/weight-agnostic-f1",
        paper=PAPER,
        in_paper="README pretrain table: weight-agnostic F1 (784-10, one shared value 0.08, 40 % zeros)",
        question="How accurate is a one-layer network of one shared value, trained only by moving its zeros?",
        grid=_weight_agnostic_f1,
        published=(Published("LaPerm, shared value 0.08", "F1", 85.46, README, PROTOCOL),),
        x_label="model",
    ),
    Experiment(
        name="laperm/conv7",
        paper=PAPER,
        in_paper="README pretrain table: Conv7 on MNIST, dense He-uniform init",
        question="How accurate is a CNN trained only by reconnecting its initial weights on MNIST?",
        grid=_conv7,
        published=(Published("LaPerm", "Conv7", 99.72, README, PROTOCOL),),
        x_label="model",
        note="the README lists k = 1200 for Conv7 while its notebook syncs every 20 steps",
    ),
    Experiment(
        name="laperm/cifar10-convs",
        paper=PAPER,
        in_paper="README pretrain table: Conv2, Conv4, Conv13 on CIFAR-10 (k = 1000, He-uniform)",
        question="How accurate are CIFAR-10 CNNs trained only by reconnecting their initial weights?",
        grid=_cifar10_convs,
        published=tuple(
            Published("LaPerm (k = 1000)", model, value, README, PROTOCOL)
            for model, value in (("Conv2", 78.21), ("Conv4", 89.17), ("Conv13", 92.21))
        ),
        x_label="model",
        note="these are not the Edge-Popup Conv-2/4 (conv2, conv4 in slotlab); their notebooks also skip the "
        "input normalisation they compute. Paper scale: 125 epochs at batch 50, a sync every 1000 steps (once an "
        "epoch). CPU scales: Conv2 and Conv4 on a training subset (5000 images at laptop scale: 40 steps an "
        "epoch, so the syncs are the ones at each epoch's end), Conv13 only as the published point.",
    ),
    Experiment(
        name="laperm/resnet50-pruned",
        paper=PAPER,
        in_paper="README pretrain table: ResNet-50 on CIFAR-10 with 0, 30, 50, 70 % of weights randomly pruned "
        "before training",
        question="How much accuracy does LaPerm lose when a random part of the initial weights is zeroed?",
        grid=None,
        missing="LaPerm's CIFAR-10 ResNet-50 (Keras ResNet-v1 layout)",
        published=tuple(
            Published("LaPerm", d, value, f"{README} (k = {k})", PROTOCOL)
            for d, value, k in ((1.0, 92.53, 400), (0.7, 92.32, 800), (0.5, 92.02, 800), (0.3, 90.97, 800))
        ),
        x_label="fraction of weights non-zero at init",
    ),
    Experiment(
        name="laperm/weight-profiles",
        paper=PAPER,
        in_paper="Sec. 2: sorted weight profiles of trained networks look alike and like the init",
        question="After ordinary training, are a layer's sorted incoming-weight vectors all alike, so that the "
        "locations rather than the values carry what was learned?",
        grid=_weight_profiles,
        x_label="model",
        note="the figure is slotlab.analysis.weight_profiles over these runs' networks; the default analysis "
        "reports their accuracy. The paper profiles Keras' pretrained ImageNet models (VGG, ResNet, DenseNet, "
        "MobileNet, NASNet, Xception); here our own trained Lenet-300-100. No published numbers.",
    ),
]
