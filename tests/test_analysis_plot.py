from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from slotlab import plot  # noqa: E402
from slotlab.analysis import (  # noqa: E402
    flip_rates,
    kept_pruned_norms,
    layer_similarity_curves,
    magnitude_ranks,
    mask_landscape,
    pairwise_similarity,
    per_run,
    similarity_matrix,
    slot_usage,
    value_histograms,
    weight_profiles,
)
from slotlab.errors import SlotlabError  # noqa: E402
from tests.analysis_helpers import mask_model  # noqa: E402

GEN = torch.Generator().manual_seed(0)
SLOTS = {
    "fc1": (torch.randn(4, 6, 5, generator=GEN), torch.randint(0, 4, (6, 5), generator=GEN)),
    "fc2": (torch.randn(4, 3, 6, generator=GEN), torch.randint(0, 4, (3, 6), generator=GEN)),
}
MODELS = {f"seed {s}": mask_model(seed=s, density=0.5) for s in range(4)}


def flips_of_two_runs() -> pd.DataFrame:
    frames = []
    for run, churn in (("greedy", 0.05), ("sampled", 0.4)):
        gen = torch.Generator().manual_seed(1)
        masks = [torch.rand(50, generator=gen) < 0.5]
        for _ in range(4):
            flip = torch.rand(50, generator=gen) < churn
            masks.append(masks[-1] ^ flip)
        frames.append(flip_rates(masks).assign(run=run))
    frame = pd.concat(frames, ignore_index=True)
    return frame.assign(epoch=frame["step"])


def figures() -> dict[str, Figure]:
    pairs = pairwise_similarity(MODELS)
    matrix = similarity_matrix(pairs, "jaccard")
    return {
        "histograms": plot.plot_value_histograms(value_histograms(SLOTS, bins=8)),
        "ranks": plot.plot_magnitude_ranks(magnitude_ranks(SLOTS)),
        "usage": plot.plot_slot_usage(slot_usage(SLOTS)),
        "flips": plot.plot_flip_rates(flips_of_two_runs()),
        "matrix": plot.plot_similarity_matrix(
            matrix, upper=similarity_matrix(pairs, "agreement"), labels=("J", "A")
        ),
        "curves": plot.plot_layer_similarity(layer_similarity_curves(pairs)),
        "landscape": plot.plot_landscape(
            mask_landscape(MODELS, accuracy={k: 0.9 + 0.01 * i for i, k in enumerate(MODELS)}), annotate=True
        ),
        "profiles": plot.plot_weight_profiles(weight_profiles(mask_model(seed=0)[0].weight.detach())),
        "norms": plot.plot_kept_pruned_norms(per_run(kept_pruned_norms, MODELS)),
    }


def test_every_plot_draws_and_saves_pdf_svg_png(tmp_path: Path) -> None:
    for name, fig in figures().items():
        assert isinstance(fig, Figure)
        written = plot.save_figure(fig, tmp_path / name, dpi=80)
        assert [p.name for p in written] == [f"{name}.pdf", f"{name}.svg", f"{name}.png"]
        pdf, svg, png = (p.read_bytes() for p in written)
        assert pdf.startswith(b"%PDF") and png.startswith(b"\x89PNG")
        assert b"/FontFile2" in pdf and b"/Type3" not in pdf  # TrueType embedded, no Type 3 fonts
        assert b"<text" in svg  # editable text, not paths
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_plots_show_what_they_are_given() -> None:
    flips = plot.plot_flip_rates(flips_of_two_runs())
    ax = flips.axes[0]
    assert [line.get_label() for line in ax.get_lines()] == ["greedy", "sampled"]
    assert ax.get_yscale() == "log"
    sampled = flips_of_two_runs().query("run == 'sampled' and layer == 'all'")["flip_rate"].to_numpy()
    assert np.allclose(ax.get_lines()[1].get_ydata(), 100 * sampled)

    pairs = pairwise_similarity(MODELS)
    lower, upper = similarity_matrix(pairs, "jaccard"), similarity_matrix(pairs, "agreement")
    mesh = plot.plot_similarity_matrix(lower, upper=upper).axes[0].collections[0]
    shown = np.asarray(mesh.get_array()).reshape(4, 4)
    assert shown[3, 0] == lower.iloc[3, 0] and shown[0, 3] == upper.iloc[0, 3]

    profiles = weight_profiles(torch.randn(5, 7))
    segments = plot.plot_weight_profiles(profiles).axes[0].collections[0].get_segments()
    assert len(segments) == 5 and all(np.all(np.diff(s[:, 1]) >= 0) for s in segments)  # sorted


def test_style_is_paper_and_readable() -> None:
    before = dict(matplotlib.rcParams)
    with plot.paper_style():
        assert matplotlib.rcParams["pdf.fonttype"] == 42 and matplotlib.rcParams["svg.fonttype"] == "none"
        assert matplotlib.rcParams["xtick.labelsize"] >= 12  # legible on a projector
    assert plot.style_path().is_file()
    with matplotlib.style.context("slotlab.styles.paper"):  # the sheet is importable by name, too
        assert matplotlib.rcParams["pdf.fonttype"] == 42
    assert dict(matplotlib.rcParams) == before  # restored: the caller's own figures are untouched


def test_plot_input_errors(tmp_path: Path) -> None:
    with pytest.raises(SlotlabError, match="needs columns flip_rate"):
        plot.plot_flip_rates(pd.DataFrame({"layer": ["all"], "epoch": [1]}))
    with pytest.raises(SlotlabError, match="no rows for layer 'fc'"):
        plot.plot_flip_rates(flips_of_two_runs(), layer="fc")
    with pytest.raises(SlotlabError, match="formats must be among pdf, svg, png"):
        plot.save_figure(Figure(), tmp_path / "x", formats=("jpg",))
    assert plot.save_figure(Figure(), tmp_path / "y.pdf", formats=("pdf",)) == [tmp_path / "y.pdf"]
