import contextlib
import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
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


# --- figure hygiene ---------------------------------------------------------------------------------------------


def drawn(fig: Figure) -> Figure:
    FigureCanvasAgg(fig).draw()  # lay out and make the lazily created ticks, outside the paper style
    return fig


def bboxes_overlap(a, b) -> bool:
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


def rendered(fig: Figure, in_style: bool) -> np.ndarray:
    buffer = io.BytesIO()
    options = {"format": "png", "dpi": 60, "bbox_inches": "tight", "pad_inches": 0.02, "facecolor": "white"}
    with plot.paper_style() if in_style else contextlib.nullcontext():
        fig.savefig(buffer, **options)
    return matplotlib.image.imread(io.BytesIO(buffer.getvalue()), format="png")


def test_a_figure_drawn_outside_the_style_looks_as_saved() -> None:
    # inline display draws outside paper_style, save_figure inside it: ticks and grid lines made lazily at the
    # draw must not change with it (without fix_ticks, these figures differ in tick labels and grid lines)
    made = figures()
    for name in ("histograms", "ranks", "usage", "flips", "curves", "profiles", "norms"):
        outside, inside = rendered(made[name], False), rendered(made[name], True)
        # equal up to antialiasing noise (1e-6); a tick or grid line of another style differs by 2e-3 or more
        assert outside.shape == inside.shape and np.abs(outside - inside).mean() < 1e-4, name


def test_legends_sit_clear_of_bars_and_histograms() -> None:
    for name in ("histograms", "ranks", "usage", "norms"):
        fig = drawn(figures()[name])
        renderer = fig.canvas.get_renderer()
        (legend,) = fig.legends
        box = legend.get_window_extent(renderer)
        for ax in fig.axes:
            if ax.get_visible():
                assert not bboxes_overlap(box, ax.get_window_extent(renderer)), name


def test_slot_usage_and_ranks_draw_the_chance_line() -> None:
    fig = figures()["usage"]
    ax = fig.axes[0]
    chance = [line for line in ax.get_lines() if line.get_linestyle() == "--" and len(line.get_ydata()) == 2]
    assert chance and all(np.allclose(line.get_ydata(), 0.25) for line in chance)  # K = 4
    assert "chance (1/K)" in [t.get_text() for t in fig.legends[0].get_texts()]


def test_similarity_matrix_colours_span_the_off_diagonal_cells() -> None:
    matrix = similarity_matrix(pairwise_similarity(MODELS), "jaccard")
    fig = plot.plot_similarity_matrix(matrix)
    mesh = fig.axes[0].collections[0]
    values = matrix.to_numpy()
    off = values[~np.eye(len(values), dtype=bool)]
    assert off.max() < 1.0  # different seeds: no pair is identical
    assert mesh.norm.vmin == pytest.approx(off.min()) and mesh.norm.vmax == pytest.approx(off.max())
    assert np.ma.getmaskarray(mesh.get_array()).reshape(4, 4).diagonal().all()  # the diagonal is left blank
    assert fig.axes[1].get_ylabel() == "jaccard"  # the colorbar says what the colour is


def test_landscape_colours_accuracy_in_percent_with_a_labelled_colorbar() -> None:
    fig = figures()["landscape"]
    points = fig.axes[0].collections[0]
    assert np.allclose(points.get_array(), [90, 91, 92, 93])
    assert fig.axes[1].get_ylabel() == "test accuracy %"


def test_save_figure_at_column_and_text_width_with_print_fonts(tmp_path: Path) -> None:
    fig = figures()["usage"]
    shown = tuple(fig.get_size_inches())
    for width, inches in (("column", 3.25), ("text", 6.75)):
        sized = plot.print_sized(fig, width)
        assert sized.get_size_inches()[0] == pytest.approx(inches)
        assert sized.get_size_inches()[1] == pytest.approx(shown[1] * inches / shown[0])
        drawn(sized)
        texts = [t for t in sized.findobj(matplotlib.text.Text) if t.get_text()]
        assert texts and all(t.get_fontsize() in (8.0, 9.0) for t in texts)
        ticks = [*sized.axes[0].get_xticklabels(), *sized.axes[0].get_yticklabels()]
        assert ticks and all(t.get_fontsize() == 8.0 for t in ticks)
        png = plot.save_figure(fig, tmp_path / width, formats=("png",), dpi=100, width=width)[0]
        pixels = matplotlib.image.imread(png)
        assert pixels.shape[1] <= inches * 100 + 2  # the tight box is never wider than the width asked for
    assert tuple(fig.get_size_inches()) == shown  # the figure shown inline is unchanged
    assert plot.print_sized(fig, "slide") is fig
    with pytest.raises(SlotlabError, match="width must be one of column, text, slide"):
        plot.save_figure(fig, tmp_path / "z", width="a4")


def test_chosen_weights_show_each_unit_as_the_image_it_reads() -> None:
    weights = np.random.default_rng(0).normal(size=(300, 784))
    fig = plot.plot_chosen_weights(weights, (1, 28, 28), units=16)
    images = [ax.get_images()[0] for ax in fig.axes if ax.get_images()]
    assert len(images) == 16
    for unit, image in enumerate(images):  # unit u's 784 weights in reading order, row by row
        assert np.array_equal(image.get_array(), weights[unit].reshape(28, 28))
    assert fig.axes[-1].get_ylabel() == "chosen weight"
    with pytest.raises(SlotlabError, match="reads the 1x28x28 image"):
        plot.plot_chosen_weights(np.zeros((100, 300)))
