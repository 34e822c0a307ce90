"""Edge-Popup (Ramanujan et al., CVPR 2020, arXiv 1911.13299): its figures and tables as experiments.

The paper gives its CIFAR-10 results as figures only; the numbers it states are the ImageNet table of the authors'
README (edge-popup/imagenet). The settings here are shared with the Biprop and IWR experiments (which build
on the same code base): at paper scale the paper's model on CIFAR-10 with augmentation; on the CPU scales either
that model on a training subset or Lenet-300-100 on MNIST as a stand-in, whose series then carry the stand-in's
name so that no verdict sets a stand-in's accuracy against the paper's number.
"""

from __future__ import annotations

from typing import Any

from slotlab.config import RECIPES
from slotlab.experiments.base import Experiment, Point, Published
from slotlab.scales import Scale

PAPER = "Ramanujan et al. 2020, What's Hidden in a Randomly Weighted Neural Network? (Edge-Popup)"
BEST_TEST = "best test epoch"
MODEL_NAMES = {
    "lenet300": "Lenet-300-100",
    "conv2": "Conv-2",
    "conv4": "Conv-4",
    "conv6": "Conv-6",
    "conv8": "Conv-8",
    "resnet18": "ResNet-18",
    "resnet20": "ResNet-20",
}
DEPTHS = ("conv2", "conv4", "conv6", "conv8")
PAPER_DENSITIES = (0.1, 0.3, 0.5, 0.7, 0.9)  # the fraction of weights kept, across the papers' k axis
SUBSETS = {"smoke": {"train_size": 256, "val_size": 100}, "laptop": {"train_size": 5000}}
SMOKE_NARROWED = ("vgg19", "vgg-small", "vgg-small-wide")
LAPTOP_HEAVY = {"train_size": 2000, "epochs": 4}  # laptop scale for networks whose CPU epoch takes minutes
# validation images of the laptop runs whose 5000-image validation each epoch cost as long as their training
LAPTOP_VAL_SIZE = 1000
STAND_IN = {"model": "lenet300", "dataset": "mnist"}
STAND_IN_TAG = " (Lenet-300-100 stand-in)"


# --- settings shared with biprop.py and iwr.py ----------------------------------------------------------------
def cifar(scale: Scale, model: str) -> dict[str, Any]:
    """``model`` on CIFAR-10 with augmentation; on the CPU scales a training subset of it (and at smoke scale,
    which checks the machinery in seconds, the VGGs at a quarter of their width: at full width a smoke run of
    VGG-Small took 34 CPU seconds)."""
    data: dict[str, Any] = {"model": model, "dataset": "cifar10", "augment": True}
    if scale.is_paper:
        return data
    if scale.name == "smoke" and model in SMOKE_NARROWED:
        data["width"] = 0.25
    return {**data, **SUBSETS.get(scale.name, SUBSETS["laptop"])}


def stand_in(scale: Scale, model: str) -> tuple[dict[str, Any], str]:
    """The paper's ``model`` on CIFAR-10 at paper scale; Lenet-300-100 on MNIST on the CPU scales, with the tag
    its series names carry there."""
    if scale.is_paper:
        return cifar(scale, model), ""
    return dict(STAND_IN), STAND_IN_TAG


def resnet_stand_in(scale: Scale) -> dict[str, Any]:
    """ResNet-20 on a CIFAR-10 subset: the CPU scales' stand-in for the papers' large ResNets (a network with
    BatchNorm); at laptop scale 2 000 images for 4 epochs, since a ResNet-20 epoch on a CPU is minutes."""
    data = cifar(scale, "resnet20")
    return {**data, **LAPTOP_HEAVY} if scale.name == "laptop" else data


def dense_baseline(scale: Scale) -> dict[str, Any]:
    """The hidden-networks dense baseline: Kaiming normal, SGD lr 0.01 with a cosine schedule, 100 epochs."""
    if scale.is_paper:
        return {"init": "kaiming", "lr": 0.01, "schedule": "cosine", "milestones": (), "epochs": 100}
    return {"init": "kaiming"}


def cifar_dense(scale: Scale, data: dict[str, Any]) -> dict[str, Any]:
    """The dense baseline on a CIFAR-10 setting ``data``, at the paper's lr 0.01 on every scale: the CPU scales'
    lr 0.05 (tuned on Lenet-300-100) diverged on Conv-2 and Conv-4, which have no BatchNorm (a training loss of
    2.7 and 19.5 after the first laptop epoch, then chance, on all three seeds)."""
    return {**dense_baseline(scale), **data, "lr": 0.01}


def densities(scale: Scale, paper: tuple[float, ...], cpu: tuple[float, ...]) -> list[float]:
    """``paper`` at paper scale; else the scale's densities among ``cpu``."""
    if scale.is_paper:
        return list(paper)
    return [d for d in scale.densities if d in cpu] or list(cpu)


def depth_models(scale: Scale) -> list[str]:
    """Conv-2 to Conv-8 at paper scale; Conv-2 and Conv-4 on a CIFAR-10 subset on the CPU scales."""
    return list(DEPTHS) if scale.is_paper else ["conv2", "conv4"]


# --- grids --------------------------------------------------------------------------------------------------
def _going_deeper(scale: Scale) -> list[Point]:
    inits = {"Kaiming normal": "kn-scaled", "signed constant": "sc-scaled"}
    if not scale.is_paper:
        inits = {"signed constant": "sc-scaled"}
    points = []
    for model in depth_models(scale):
        data = cifar(scale, model)
        for label, init in inits.items():
            points += [
                Point(f"{MODEL_NAMES[model]}, {label}", d, "edge-popup", {"density": d, "init": init, **data})
                for d in densities(scale, PAPER_DENSITIES, (0.1, 0.5))
            ]
        points.append(Point(f"{MODEL_NAMES[model]}, dense", 1.0, "dense", cifar_dense(scale, data)))
    return points


ABLATION_INITS = ("kn", "kn-scaled", "sc", "sc-scaled")  # the figure's four
MORE_INITS = ("uc", "ku", "xn", "xc")  # the other inits of the released code; uc-scaled at paper scale too


def _init_ablation(scale: Scale) -> list[Point]:
    setting, tag = stand_in(scale, "conv4")
    more = (*MORE_INITS, "uc-scaled") if scale.is_paper else MORE_INITS
    return [
        *(
            Point(f"{init}{tag}", d, "edge-popup", {"density": d, "init": init, **setting})
            for init in ABLATION_INITS
            for d in densities(scale, PAPER_DENSITIES, (0.1, 0.5))
        ),
        *(
            Point(f"{init}{tag}", d, "edge-popup", {"density": d, "init": init, **setting})
            for init in more
            for d in densities(scale, PAPER_DENSITIES, (0.5,))
        ),
    ]


PAPER_WIDTHS = (0.25, 0.5, 1.0, 1.5, 2.0)  # the width multipliers of the released code's Conv4Wide/Conv6Wide
CPU_WIDTHS = (0.5, 1.0, 2.0)


def widths(scale: Scale, paper: tuple[float, ...] = PAPER_WIDTHS) -> tuple[float, ...]:
    return paper if scale.is_paper else CPU_WIDTHS


def _going_wider(scale: Scale) -> list[Point]:
    """Accuracy against width at a few fractions kept: Conv-4 and Conv-6 at paper scale, the Lenet stand-in on
    the CPU scales (width scales its hidden units)."""
    models = ("conv4", "conv6") if scale.is_paper else (None,)
    points = []
    for model in models:
        setting, tag = (cifar(scale, model), "") if model else stand_in(scale, "conv4")
        name = f"{MODEL_NAMES[model]}, " if not tag else ""  # a stand-in's series carry its tag instead
        for d in densities(scale, (0.1, 0.3, 0.5), (0.1, 0.5)):
            points += [
                Point(f"{name}k = {d:g}{tag}", w, "edge-popup", {"density": d, "width": w, **setting})
                for w in widths(scale)
            ]
        points += [
            Point(f"{name}dense{tag}", w, "dense", {**dense_baseline(scale), "width": w, **setting})
            for w in widths(scale)
        ]
    return points


def _depth_width_density(scale: Scale) -> list[Point]:
    """Every (depth, width, fraction kept): Conv-2 to Conv-8 at paper scale, Conv-2 and Conv-4 on a CIFAR-10
    subset on the CPU scales; one series per (depth, k), x the width."""
    kept = (0.1, 0.3, 0.5, 0.7) if scale.is_paper else (0.5,)
    return [
        Point(
            f"{MODEL_NAMES[model]}, k = {d:g}",
            w,
            "edge-popup",
            {"density": d, "width": w, **cifar(scale, model)},
        )
        for model in depth_models(scale)
        for d in kept
        for w in ((0.5, 1.0, 2.0) if scale.is_paper else (0.5, 1.0))
    ]


SUPERMASK_X = 0.5  # where the supermask's point is drawn: its density is learned, about 1/2 at the start


def _vs_supermask(scale: Scale) -> list[Point]:
    setting, tag = stand_in(scale, "conv4")
    return [
        *(
            Point(f"edge-popup{tag}", d, "edge-popup", {"density": d, **setting})
            for d in densities(scale, PAPER_DENSITIES, (0.1, 0.5))
        ),
        Point(f"supermask (Zhou et al.){tag}", SUPERMASK_X, "supermask", {"init": "sc", **setting}),
    ]


def _density_sweep(scale: Scale) -> list[Point]:
    return [
        *(Point("edge-popup", d, "edge-popup", {"density": d}) for d in scale.densities),
        Point("dense", 1.0, "dense", dense_baseline(scale)),
    ]


def _imagenet(scale: Scale) -> list[Point]:
    """The README table: each ResNet and init at 30 % kept under the ImageNet recipe, from the configs
    ``configs/largescale/subnetonly/<model>-u{kn,sc}-unsigned`` (unscaled inits); ResNet-20 on a CIFAR-10 subset
    on the CPU scales."""
    if scale.is_paper:
        return [
            Point(
                label,
                IMAGENET_MODELS[model],
                "edge-popup",
                {**RECIPES["imagenet"], "model": model, "dataset": "imagenet", "density": 0.3, "init": init},
            )
            for model in IMAGENET_MODELS
            for init, label in IMAGENET_INITS.items()
        ]
    return [
        Point(
            f"{label} (ResNet-20 stand-in)",
            "ResNet-20",
            "edge-popup",
            {**resnet_stand_in(scale), "density": 0.3, "init": init},
        )
        for init, label in IMAGENET_INITS.items()
    ]


IMAGENET_MODELS = {"resnet50": "ResNet-50", "resnet101": "ResNet-101", "wide_resnet50_2": "Wide ResNet-50"}
IMAGENET_INITS = {"kn": "Kaiming normal", "sc": "signed Kaiming constant"}
IMAGENET_PUBLISHED = (
    ("Kaiming normal", "ResNet-50", 61.7),
    ("signed Kaiming constant", "ResNet-50", 68.6),
    ("Kaiming normal", "ResNet-101", 66.15),
    ("signed Kaiming constant", "ResNet-101", 72.3),
    ("Kaiming normal", "Wide ResNet-50", 67.9),
    ("signed Kaiming constant", "Wide ResNet-50", 73.3),
)

EXPERIMENTS = [
    Experiment(
        name="edge-popup/going-deeper",
        paper=PAPER,
        in_paper="figure 'going deeper': Conv-2 to Conv-8 on CIFAR-10, accuracy against % of weights kept",
        question="Do deeper random networks hide better subnetworks, closer to their trained dense versions?",
        grid=_going_deeper,
        x_label="fraction of weights kept (k)",
        note="the paper gives this as a figure whose values its text does not state: no published numbers "
        "(IWR's re-runs of Edge-Popup are the published numbers of iwr/density-conv2 ... conv8). Paper scale: "
        "scaled Kaiming normal and scaled signed constant, 100 epochs, with the SGD dense line (the paper also "
        "draws an Adam one). CPU scales: Conv-2 and Conv-4 on a CIFAR-10 subset, signed constant only.",
    ),
    Experiment(
        name="edge-popup/going-wider",
        paper=PAPER,
        in_paper="figure 'going wider': Conv-4 and Conv-6 with a width multiplier",
        question="Do wider random networks hide better subnetworks?",
        grid=_going_wider,
        x_label="width multiplier",
        log_x=True,
        note="a figure without stated numbers: no published values. Width multiplies every hidden channel and "
        "unit (int(n * width), as the released code's Conv4Wide); paper scale: Conv-4 and Conv-6 on CIFAR-10 at "
        "widths 0.25 to 2; CPU scales: Lenet-300-100 on MNIST at widths 0.5, 1, 2.",
    ),
    Experiment(
        name="edge-popup/depth-width-density",
        paper=PAPER,
        in_paper="analysis: the going-deeper and going-wider figures as one grid of depth, width and % kept",
        question="How do depth, width and the fraction of weights kept trade off against one another?",
        grid=_depth_width_density,
        x_label="width multiplier",
        log_x=True,
        note="no published numbers (the paper sweeps depth and width in separate figures). CPU scales: Conv-2 "
        "and Conv-4 on a 5000-image CIFAR-10 subset at k = 0.5, widths 0.5 and 1.",
    ),
    Experiment(
        name="edge-popup/init-ablation",
        paper=PAPER,
        in_paper="figure: the weight distributions (Kaiming normal, scaled Kaiming normal, signed constant, "
        "scaled signed constant), accuracy against % of weights kept",
        question="Which random weight distribution hides the best subnetworks?",
        grid=_init_ablation,
        x_label="fraction of weights kept (k)",
        note="a figure whose values the paper's text does not state: no published numbers. Paper scale: Conv-4 "
        "on CIFAR-10; CPU scales: Lenet-300-100 on MNIST as a stand-in. Beyond the figure's four: unsigned "
        "constant, Kaiming uniform, Xavier normal and Xavier constant at k = 0.5 (every k at paper scale, with "
        "scaled unsigned constant); --fan-mode fan_out and --scale-rule released give the released code's "
        "other settings.",
    ),
    Experiment(
        name="edge-popup/density-sweep",
        paper=PAPER,
        in_paper="the k sweep (accuracy against % of weights kept) on the fully connected network of the "
        "authors' configs (configs/smallscale/fc)",
        question="How does accuracy depend on the fraction of weights kept: is it an inverted U with the best "
        "between 30 and 70 %?",
        grid=_density_sweep,
        x_label="fraction of weights kept (k)",
        note="Lenet-300-100 on MNIST at every scale; the authors ship its configs but report no numbers for it",
    ),
    Experiment(
        name="edge-popup/vs-supermask",
        paper=PAPER,
        in_paper="figure: Edge-Popup against Zhou et al.'s supermask across k",
        question="Does Edge-Popup find better subnetworks than Zhou et al.'s sampled supermasks?",
        grid=_vs_supermask,
        x_label="fraction of weights kept (k)",
        note="a figure whose values the paper's text does not state: no published numbers. The supermask "
        "learns its own density (about half the weights at the start) and evaluates with sampled masks, as Zhou "
        "et al.; its point is drawn at k = 0.5. Both on signed-constant weights (the supermask's unscaled: it "
        "has no k to scale by). Paper scale: Conv-4 on CIFAR-10; CPU scales: Lenet-300-100 on MNIST. At laptop "
        "scale under Edge-Popup's recipe the supermask hardly trains (about 17 %); Zhou et al.'s own recipe for "
        "it, SGD at lr 100 without weight decay, reaches 95.7 % on the same point (--lr 100 --weight-decay 0; "
        "three seeds, benchmarks/supermask_recipe.py).",
    ),
    Experiment(
        name="edge-popup/imagenet",
        paper=PAPER,
        in_paper="ImageNet table (README results): ResNet-50, ResNet-101, Wide ResNet-50 at 30 % of weights",
        question="How accurate are subnetworks of large random ResNets on ImageNet?",
        grid=_imagenet,
        seeds={"smoke": 1, "laptop": 3, "paper": 1},
        note="paper scale: one run per point, as the table (each is about a hundred ImageNet epochs of a "
        "ResNet-50 or larger; --seeds N for more), with ImageNet in $SLOTLAB_DATA/imagenet/{train,val} and each "
        "run on one GPU. The CPU scales measure ResNet-20 on a CIFAR-10 subset (laptop: 2 000 images, 4 epochs) "
        "with both inits at 30 % kept, under stand-in series names: does signed constant beat Kaiming normal "
        "there too?",
        published=tuple(
            Published(
                series, model, value, "hidden-networks README table (ImageNet top-1, 30 % kept)", BEST_TEST
            )
            for series, model, value in IMAGENET_PUBLISHED
        ),
        x_label="model",
    ),
    Experiment(
        name="edge-popup/imagenet-density",
        paper=PAPER,
        in_paper="figure: ImageNet accuracy against % of weights kept and against the number of parameters",
        question="How does ImageNet accuracy depend on k and on the subnetwork's size?",
        grid=None,
        missing="the k values of the figure's sweep, which the paper's text does not state (each run would be "
        "one of edge-popup/imagenet's at another k)",
    ),
]
