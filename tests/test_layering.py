"""The package's shape: imports run one way, from the ground up, and no module imports slotlab inside a function.

A module may import modules of its own layer or of lower layers, never of a higher one, and the import graph has
no cycle. A new module must be given its layer here, which is the moment to ask where it belongs.
"""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "slotlab"

LAYERS: dict[int, tuple[str, ...]] = {
    0: (  # ground: no knowledge of networks
        "slotlab",
        "slotlab.errors",
        "slotlab.compiled",
        "slotlab.checkpoint",
        "slotlab.device",
        "slotlab.locks",
        "slotlab.scales",
        "slotlab.bitpack",
        "slotlab.callback",
        "slotlab.dataset_files",
        "slotlab.styles",
        "slotlab.notebook_errors",
        "slotlab.stats",
    ),
    1: (  # layers and models (and the DDP wrapper, which switches the slot layers' gradient path)
        "slotlab.layers",
        "slotlab.layers.factory",
        "slotlab.layers.activations",
        "slotlab.layers.dense",
        "slotlab.layers.slot",
        "slotlab.layers.edge_popup",
        "slotlab.layers.biprop",
        "slotlab.layers.random_mask",
        "slotlab.layers.supermask",
        "slotlab.layers.fixed_mask",
        "slotlab.layers.plain",
        "slotlab.init",
        "slotlab.models",
        "slotlab.distributed",
    ),
    2: ("slotlab.data", "slotlab.imagenet"),
    3: ("slotlab.optim", "slotlab.slot_sgd", "slotlab.train"),  # optimisers and the one training loop
    4: (
        "slotlab.recycle",
        "slotlab.laperm",
        "slotlab.global_mask",
        "slotlab.sanity",
    ),  # the methods' callbacks
    5: (
        "slotlab.methods",
        "slotlab.methods.base",
        "slotlab.methods.dense",
        "slotlab.methods.slots",
        "slotlab.methods.masks",
        "slotlab.methods.laperm",
        "slotlab.methods.random_slots",
        "slotlab.methods.supermask",
        "slotlab.methods.mask_finetune",
    ),
    6: ("slotlab.config",),
    7: ("slotlab.runs", "slotlab.export", "slotlab.sweep", "slotlab.cost"),
    8: (
        "slotlab.analysis",
        "slotlab.analysis.sources",
        "slotlab.analysis.recorder",
        "slotlab.analysis.selection",
        "slotlab.analysis.flips",
        "slotlab.analysis.similarity",
        "slotlab.analysis.landscape",
        "slotlab.analysis.profiles",
        "slotlab.plot",
    ),
    9: (  # notebook support: the notebooks' configs, the papers' experiments, widgets
        "slotlab.notebooks",
        "slotlab.widgets",
        "slotlab.experiments",
        "slotlab.experiments.base",
        "slotlab.experiments.slot_machines",
        "slotlab.experiments.edge_popup",
        "slotlab.experiments.biprop",
        "slotlab.experiments.iwr",
        "slotlab.experiments.laperm",
        "slotlab.experiments.measured",
        "slotlab.reproduce",
    ),
    10: ("slotlab.cli", "slotlab.__main__"),
}
LAYER_OF = {module: layer for layer, modules in LAYERS.items() for module in modules}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports(path: Path, known: set[str]) -> list[tuple[str, int, bool]]:
    """(imported slotlab module, line, inside a function) for every import of slotlab in ``path``."""
    tree = ast.parse(path.read_text(), str(path))
    inside: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            inside.update(id(child) for child in ast.walk(node) if child is not node)
    found = []
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for (
                alias
            ) in node.names:  # ``from slotlab import distributed`` imports the module slotlab.distributed
                sub = f"{node.module}.{alias.name}"
                targets.append(sub if sub in known else node.module)
        for target in targets:
            if target == "slotlab" or target.startswith("slotlab."):
                found.append((target, node.lineno, id(node) in inside))
    return found


def graph() -> dict[str, set[str]]:
    found = modules()
    return {name: {t for t, _, _ in imports(path, set(found))} - {name} for name, path in found.items()}


def test_every_module_has_a_layer() -> None:
    missing = sorted(set(modules()) - set(LAYER_OF))
    assert not missing, f"give these modules a layer in tests/test_layering.py: {missing}"


def test_no_import_of_slotlab_inside_a_function() -> None:
    found = modules()
    inner = [
        f"{name}:{line} imports {target}"
        for name, path in found.items()
        for target, line, in_function in imports(path, set(found))
        if in_function
    ]
    assert not inner, inner


def test_imports_run_from_higher_layers_to_lower_ones() -> None:
    upward = [
        f"{name} (layer {LAYER_OF[name]}) imports {target} (layer {LAYER_OF[target]})"
        for name, targets in graph().items()
        for target in targets
        if name in LAYER_OF and target in LAYER_OF and LAYER_OF[target] > LAYER_OF[name]
    ]
    assert not upward, upward


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the directed graph ``edges``, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_import_graph_has_no_cycle() -> None:
    assert find_cycle(graph()) is None, " -> ".join(find_cycle(graph()) or [])


@pytest.mark.parametrize(
    "edges, cyclic",
    [
        ({"a": {"b"}, "b": {"c"}, "c": set()}, False),
        ({"a": {"b"}, "b": {"c"}, "c": {"a"}}, True),
        ({"a": {"a"}}, True),
        ({"a": {"b", "c"}, "b": {"c"}, "c": set()}, False),
    ],
)
def test_the_cycle_finder_finds_cycles(edges: dict[str, set[str]], cyclic: bool) -> None:
    assert (find_cycle(edges) is not None) == cyclic


def test_the_import_reader_sees_imports_inside_functions(tmp_path: Path) -> None:
    source = tmp_path / "probe.py"
    source.write_text(
        "from slotlab.errors import SlotlabError\n\ndef f():\n    from slotlab.runs import open_run\n"
    )
    found = imports(source, {"slotlab.errors", "slotlab.runs"})
    assert ("slotlab.errors", 1, False) in found and ("slotlab.runs", 4, True) in found
