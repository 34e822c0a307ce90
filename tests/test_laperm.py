import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from slotlab.callback import Callback
from slotlab.cli import main
from slotlab.config import RunConfig
from slotlab.data import make_splits
from slotlab.errors import SlotlabError
from slotlab.init import initialize
from slotlab.laperm import (
    InitialRows,
    LaPerm,
    LaPermSync,
    as_rows,
    moved_records,
    parameter_kinds,
    permute_rows,
    randomly_permute_rows,
    stable_order,
)
from slotlab.layers import DenseFactory
from slotlab.models import MNIST_MODELS, MODELS, build_model
from slotlab.runs import initial_network, load_or_run, make_trainer
from slotlab.train import Trainer
from tests.interrupt import Interrupt

QUICK = dict(method="laperm", dataset="synthetic", optimizer="adam", lr=1e-3, val_size=300, batch_size=64)


def reference_permutation(current: torch.Tensor, initial: torch.Tensor) -> torch.Tensor:
    """Slow and obvious: per row, rank every entry by (value, position) and give it the initial value of that rank.

    Computed in Python; the result is on ``current``'s device."""
    rows_now, rows_init = as_rows(current).tolist(), as_rows(initial).tolist()
    out = []
    for row, row0 in zip(rows_now, rows_init, strict=True):
        by_rank = sorted(range(len(row)), key=lambda j: (row[j], j))
        values = sorted(row0)
        new = [0.0] * len(row)
        for rank, j in enumerate(by_rank):
            new[j] = values[rank]
        out.append(new)
    return torch.tensor(out, dtype=current.dtype, device=current.device).reshape(current.shape)


def is_row_permutation(a: torch.Tensor, b: torch.Tensor) -> bool:
    return torch.equal(as_rows(a).sort(dim=1).values, as_rows(b).sort(dim=1).values)


class Mixed(nn.Module):
    """Every kind of parameter: conv and linear weights, biases, BatchNorm scale and shift."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3, bias=True)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4 * 4 * 4, 3, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(F.relu(self.bn(self.conv(x))).flatten(1))


def train_steps(model: nn.Module, opt, steps: int, seed: int = 0, check=None) -> None:
    """``steps`` steps on random batches drawn on the CPU (the same on every device), on the model's device."""
    g = torch.Generator().manual_seed(seed)
    device = next(model.parameters()).device
    for _ in range(steps):
        x, y = torch.randn(8, 2, 6, 6, generator=g), torch.randint(0, 3, (8,), generator=g)
        x, y = x.to(device), y.to(device)
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
        if check is not None:
            check()


@pytest.mark.parametrize("shape", [(7, 13), (5, 3, 2, 2), (11,)])
def test_sync_equals_an_explicit_reference_on_random_tensors_with_ties(shape, device: torch.device) -> None:
    g = torch.Generator().manual_seed(sum(shape))  # drawn on the CPU, then moved
    for trial in range(6):
        initial = torch.randint(-3, 4, shape, generator=g).float()  # few distinct values: many ties
        current = (
            torch.randint(-2, 3, shape, generator=g).float() if trial % 2 else torch.randn(shape, generator=g)
        )
        initial, current = initial.to(device), current.to(device)
        ours = permute_rows(as_rows(current), as_rows(initial).sort(dim=1).values).view(shape)
        assert torch.equal(ours, reference_permutation(current, initial))
        assert is_row_permutation(ours, initial)


def test_the_fast_cpu_order_is_torchs_stable_sort(device: torch.device) -> None:
    """On the CPU the fast path against torch's stable sort; on CUDA (torch.sort there) the same CPU order: the
    sync ranks ties, -0.0 and NaNs alike on every device."""
    dtype = torch.float32  # the fast path's dtype; others take torch.sort itself
    g = torch.Generator().manual_seed(3)
    rows = torch.randn(40, 57, generator=g, dtype=dtype) * 10.0 ** torch.randint(
        -40, 30, (40, 57), generator=g
    )
    rows[:10] = torch.randint(-2, 3, (10, 57), generator=g).to(dtype)  # ties
    specials = torch.tensor(
        [0.0, -0.0, float("nan"), -float("nan"), float("inf"), -float("inf")], dtype=dtype
    )
    rows[10:20, :30] = specials[torch.randint(0, 6, (10, 30), generator=g)]
    order = stable_order(rows.to(device))
    assert order.device == rows.to(device).device
    assert torch.equal(order.cpu(), torch.sort(rows, dim=1, stable=True).indices)


def test_wrapper_sync_follows_the_inner_weights_ranks(device: torch.device) -> None:
    model = Mixed().to(device)
    initial = model.fc.weight.detach().clone(), model.conv.weight.detach().clone()
    opt = LaPerm(model, torch.optim.Adam(model.parameters(), lr=0.05), sync_period=1000)
    train_steps(model, opt, 7)
    inner = model.fc.weight.detach().clone(), model.conv.weight.detach().clone()
    assert not is_row_permutation(inner[0], initial[0])  # Adam moved the values
    opt.sync()
    assert torch.equal(model.fc.weight, reference_permutation(inner[0], initial[0]))
    assert torch.equal(model.conv.weight, reference_permutation(inner[1], initial[1]))


def test_k1_keeps_every_row_a_permutation_after_every_step_and_skips_bias_and_norm(
    device: torch.device,
) -> None:
    model = Mixed().to(device)
    init = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = LaPerm(model, torch.optim.Adam(model.parameters(), lr=0.05), sync_period=1)
    steps = []

    def check() -> None:
        steps.append(1)
        for name in ("conv.weight", "fc.weight"):
            assert is_row_permutation(dict(model.named_parameters())[name], init[name])

    train_steps(model, opt, 6, check=check)
    assert len(steps) == 6 and opt.synced_at == 6
    params = dict(model.named_parameters())
    assert not torch.equal(params["conv.weight"], init["conv.weight"])  # permuted, not frozen
    for name in ("conv.bias", "fc.bias", "bn.weight", "bn.bias"):  # trained by Adam, never permuted
        assert not is_row_permutation(params[name], init[name])
    # a sync on its own leaves the skipped tensors bit for bit as they are
    train_steps(model, opt.optimizer, 2)  # inner steps only: weights drift off their permutations
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt.steps += 1  # pretend a step happened, so the sync is not a no-op
    opt.sync()
    for name in ("conv.bias", "fc.bias", "bn.weight", "bn.bias"):
        assert torch.equal(params[name], before[name])
    assert not torch.equal(params["fc.weight"], before["fc.weight"])


def test_biases_and_batchnorm_are_permuted_when_asked(device: torch.device) -> None:
    model = Mixed().to(device)
    with torch.no_grad():
        for p in (
            model.bn.weight,
            model.bn.bias,
        ):  # BatchNorm starts at ones and zeros: make it worth permuting
            p.copy_(torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    init = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = LaPerm(
        model,
        torch.optim.Adam(model.parameters(), lr=0.05),
        sync_period=3,
        permute_bias=True,
        permute_norm=True,
    )
    train_steps(model, opt, 6)
    for name, param in model.named_parameters():
        assert is_row_permutation(param, init[name]), name
    train_steps(model, opt.optimizer, 2)
    inner = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt.steps += 1
    opt.sync()
    for name, param in model.named_parameters():  # 1-D tensors: one row each
        assert torch.equal(param, reference_permutation(inner[name], init[name])), name


def test_sync_period_counts_inner_steps_and_the_optimizer_state_is_kept(device: torch.device) -> None:
    model = Mixed().to(device)
    init = model.fc.weight.detach().clone()
    opt = LaPerm(model, torch.optim.Adam(model.parameters(), lr=0.05), sync_period=4)
    for step in range(1, 9):
        train_steps(model, opt, 1, seed=step)
        assert is_row_permutation(model.fc.weight, init) == (step % 4 == 0)
    state = opt.optimizer.state[model.fc.weight]
    assert int(state["step"]) == 8 and state["exp_avg"].abs().sum() > 0  # moments not reset by syncs


def test_wrapper_state_resumes_bit_identical_and_takes_a_scheduler(
    device: torch.device, deterministic
) -> None:
    def make():
        torch.manual_seed(1)
        model = Mixed().to(device)
        opt = LaPerm(model, torch.optim.Adam(model.parameters(), lr=0.05), sync_period=3)
        return model, opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 0.5**step)

    model, opt, sched = make()
    for i in range(8):
        train_steps(model, opt, 1, seed=i)
        sched.step()
    assert opt.optimizer.param_groups[0]["lr"] == 0.05 * 0.5**8  # the scheduler drives the inner optimizer
    whole = {n: p.detach().clone() for n, p in model.named_parameters()}

    model, opt, sched = make()
    for i in range(5):
        train_steps(model, opt, 1, seed=i)
        sched.step()
    saved = (model.state_dict(), opt.state_dict(), sched.state_dict())
    model, opt, sched = make()  # fresh objects: initial rows must come from the state, not the model
    train_steps(model, torch.optim.SGD(model.parameters(), lr=1.0), 1)  # make the new model differ
    model.load_state_dict(saved[0])
    opt.load_state_dict(saved[1])
    sched.load_state_dict(saved[2])
    for i in range(5, 8):
        train_steps(model, opt, 1, seed=i)
        sched.step()
    for name, param in model.named_parameters():
        assert torch.equal(param, whole[name]), name


@pytest.mark.parametrize("name", list(MODELS))
def test_every_dense_factory_model_syncs_to_permutations(name: str, device: torch.device) -> None:
    shape = (1, 28, 28) if name in MNIST_MODELS else (3, 32, 32)
    # PyTorch's initial values: quicker than slotlab's
    model = build_model(name, DenseFactory(), shape, 10).to(device)
    init = {n: p.detach().clone() for n, p in model.named_parameters()}
    has_norm = any(kind == "norm" for _, _, kind in parameter_kinds(model))  # else permute_norm is refused
    opt = LaPerm(model, torch.optim.Adam(model.parameters(), lr=0.01), sync_period=2, permute_norm=has_norm)
    x, y = torch.randn(2, *shape).to(device), torch.tensor([0, 1], device=device)
    F.cross_entropy(model(x), y).backward()  # the model runs
    opt.step()
    for p in model.parameters():  # a second step on made-up gradients, to keep the big models quick
        p.grad = torch.randn_like(p)
    opt.step()
    assert opt.synced_at == 2
    kinds = {name: kind for name, _, kind in parameter_kinds(model)}
    for n, p in model.named_parameters():
        if kinds.get(n) == "bias":  # biases train freely unless permute_bias (the released skip_bias=True)
            continue
        assert is_row_permutation(p, init[n]), n


def test_bad_input_is_one_line() -> None:
    model = Mixed()
    for k in (0, -3, 2.5):
        with pytest.raises(SlotlabError, match="sync period k must be a whole number >= 1") as info:
            LaPerm(model, sync_period=k)
        assert "\n" not in str(info.value)
    with pytest.raises(SlotlabError, match="optimizer holds none of the model's parameters"):
        LaPerm(model, torch.optim.Adam(Mixed().parameters()))
    with pytest.raises(SlotlabError, match="nothing to permute"):
        LaPerm(model, torch.optim.Adam(model.bn.parameters()))
    opt = LaPerm(model, sync_period=5)
    model.fc.weight.data = torch.zeros(3, 32)  # the model changed under the wrapper
    opt.steps += 1
    with pytest.raises(SlotlabError, match=r"fc.weight has shape \(3, 32\) but .* \(3, 64\)"):
        opt.sync()
    with pytest.raises(SlotlabError, match="sync_period|sync period k must be"):
        RunConfig(**{**QUICK, "sync_period": 0})
    with pytest.raises(SlotlabError, match=r"init_density values must be in \(0, 1\]"):
        RunConfig(**{**QUICK, "init_density": "1.5"})
    with pytest.raises(SlotlabError, match="gives 2 densities but the model has 3 weight layers"):
        initial_network(RunConfig(**{**QUICK, "init_density": "0.5,0.5"}), (1, 28, 28), 10)


def test_method_defaults_to_adam_and_keeps_explicit_choices() -> None:
    assert RunConfig(init="paper").hash == "44136fa355b3"  # the new fields leave existing hashes alone
    config = RunConfig(method="laperm")
    assert (config.optimizer, config.lr) == ("adam", 1e-3)
    assert RunConfig(method="laperm", optimizer="sgd", lr=0.1).optimizer == "sgd"
    assert RunConfig(method="dense").optimizer == RunConfig().optimizer


def test_sparse_and_weight_agnostic_starts_keep_their_zeros(device: torch.device) -> None:
    config = RunConfig(
        **{**QUICK, "lr": 0.02}, epochs=2, init_density="0.1,1/2,1", shared_value=0.05, sync_period=8
    )
    result = load_or_run(config, device=device)
    init, best = result.model("init"), result.model("best")
    weights = [(n, p) for n, p in init.named_parameters()]
    counts = [int((p == 0).sum()) for _, p in weights]
    assert counts == [784 * 300 - round(0.1 * 784 * 300), 300 * 100 - 15000, 0]
    shared = torch.tensor(0.05).item()  # as float32 holds it
    assert all(set(p.unique().tolist()) <= {0.0, shared} for _, p in weights)
    trained = dict(best.named_parameters())
    for name, p in weights:
        assert is_row_permutation(trained[name], p)  # so each row keeps its count of zeros
    assert not torch.equal(trained[weights[0][0]], weights[0][1])  # the zeros moved


def test_sparse_start_without_shared_value_keeps_the_drawn_values() -> None:
    dense = initial_network(RunConfig(**QUICK), (1, 28, 28), 10)
    sparse = initial_network(RunConfig(**QUICK, init_density="0.25"), (1, 28, 28), 10)
    for (_, a), (_, b) in zip(dense.named_parameters(), sparse.named_parameters(), strict=True):
        kept = b != 0
        assert torch.equal(a[kept], b[kept]) and int(kept.sum()) == round(0.25 * a.numel())


class Record(Callback):
    """What the evaluations see: whether every weight row is a permutation of the initial one."""

    def __init__(self, initial: dict) -> None:
        self.initial, self.seen = initial, []

    def on_epoch_end(self, trainer: Trainer) -> None:  # runs after the epoch's validation
        params = dict(trainer.model.named_parameters())
        self.seen.append(all(is_row_permutation(params[n], p) for n, p in self.initial.items()))


def test_trainer_evaluates_and_checkpoints_synced_networks_only(device: torch.device) -> None:
    config = RunConfig(
        **QUICK, epochs=3, train_size=320, sync_period=3
    )  # 5 steps/epoch: 3 does not divide it
    splits = make_splits("synthetic", 300, train_size=320)
    model = initial_network(config, (1, 28, 28), 10)
    initial = {n: p.detach().clone().to(device) for n, p in model.named_parameters()}
    record = Record(initial)
    trainer = make_trainer(config, model, splits, device, [record], progress=False)
    assert isinstance(trainer.callbacks[0], LaPermSync)
    trainer.fit()
    assert record.seen == [True, True, True]
    result = load_or_run(config, device=device)
    init = dict(result.model("init").named_parameters())
    for which in ("best", "last"):
        for name, p in result.model(which).named_parameters():
            assert is_row_permutation(p, init[name]), (which, name)


def whole_and_resumed(config: RunConfig, tmp_path: Path, device: torch.device, cut_at_step: int):
    """The run trained at once, and trained again with an interrupt at ``cut_at_step`` and resumed; asserts that
    both end with the same weights and history."""
    whole = load_or_run(config, root=tmp_path / "whole", device=device)
    with pytest.raises(KeyboardInterrupt):
        load_or_run(config, root=tmp_path / "cut", device=device, callbacks=[Interrupt(at_step=cut_at_step)])
    resumed = load_or_run(config, root=tmp_path / "cut", device=device)
    a, b = whole.model("last").state_dict(), resumed.model("last").state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert whole.history.drop(columns="seconds").equals(resumed.history.drop(columns="seconds"))
    return whole, resumed


def test_interrupted_laperm_run_resumes_bit_identical(
    tmp_path: Path, device: torch.device, deterministic
) -> None:
    config = RunConfig(**QUICK, epochs=3, train_size=192, sync_period=2, init_density="0.5")  # 3 steps/epoch
    _, resumed = whole_and_resumed(config, tmp_path, device, cut_at_step=3 + 2)
    last = torch.load(resumed.path / "last.pt", weights_only=True)
    assert last["optimizer"]["state"]  # Adam's moments travel with the run


def test_the_released_rule_syncs_at_multiples_of_k_only_and_evaluates_the_inner_weights(
    device: torch.device,
) -> None:
    # 5 steps per epoch, k = 3: syncs at steps 3, 6, 9, 12, 15; epoch ends at 5 and 10 are no sync points
    config = RunConfig(**QUICK, epochs=3, train_size=320, sync_period=3, sync_at_evaluation=False)
    splits = make_splits("synthetic", 300, train_size=320)
    model = initial_network(config, (1, 28, 28), 10)
    initial = {n: p.detach().clone().to(device) for n, p in model.named_parameters()}
    record = Record(initial)
    trainer = make_trainer(config, model, splits, device, [record], progress=False)
    trainer.fit()
    assert record.seen == [False, False, True]  # the default rule syncs there: [True, True, True]
    assert trainer.callbacks[0].moved["step"] == [3, 6, 9, 12, 15]


def test_a_released_rule_run_resumes_bit_identical_with_its_moved_counts(
    tmp_path: Path, device: torch.device, deterministic
) -> None:
    # 3 steps per epoch, k = 2: the epoch-1 checkpoint (step 3) holds inner weights, the last sync was step 2
    config = RunConfig(**QUICK, epochs=3, train_size=192, sync_period=2, sync_at_evaluation=False)
    whole, resumed = whole_and_resumed(config, tmp_path, device, cut_at_step=3 + 2)
    moved_whole, moved_resumed = moved_records(whole), moved_records(resumed)
    assert sorted(set(moved_whole["step"])) == [2, 4, 6, 8]  # no sync at the epoch ends, steps 3 and 6
    assert moved_whole.equals(moved_resumed)


def test_cli_trains_laperm_with_adam(tmp_path: Path, capsys) -> None:
    code = main(
        ["train", "--method", "laperm", "--sync-period", "3", "--dataset", "synthetic", "--epochs", "1",
         "--val-size", "300", "--train-size", "256", "--runs", str(tmp_path), "--no-progress"]
    )  # fmt: skip
    assert code == 0
    (folder,) = tmp_path.iterdir()
    assert folder.name.startswith("laperm-lenet300-synthetic-")
    assert '"optimizer": "adam"' in (folder / "config.json").read_text()


def test_a_ddp_wrapped_model_syncs_and_its_state_moves_to_the_plain_model(
    tmp_path: Path, device: torch.device
) -> None:
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    if device.type == "cuda" and not dist.is_nccl_available():
        pytest.skip("this torch has no NCCL")

    def make() -> nn.Sequential:
        torch.manual_seed(0)
        return nn.Sequential(nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, 3))

    backend = "nccl" if device.type == "cuda" else "gloo"  # what slotlab.distributed takes on each device
    dist.init_process_group(backend, init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        runs = []
        for wrap in (True, False):  # the sync depends on the tensors alone, not on the wrapping
            model = make().to(device)
            net = DistributedDataParallel(model) if wrap else model
            opt = LaPerm(net, torch.optim.Adam(net.parameters(), lr=0.05), sync_period=3)
            g = torch.Generator().manual_seed(1)
            for _ in range(7):
                opt.zero_grad()
                x, y = torch.randn(8, 12, generator=g), torch.randint(0, 3, (8,), generator=g)
                x, y = x.to(device), y.to(device)
                F.cross_entropy(net(x), y).backward()
                opt.step()
            opt.sync()
            runs.append((model, opt))
    finally:
        dist.destroy_process_group()
    (ddp_model, ddp_opt), (plain_model, plain_opt) = runs
    assert ddp_opt.rows.state_dict()["names"] == ["0.weight", "2.weight"]  # without DDP's "module." prefix
    for a, b in zip(ddp_model.parameters(), plain_model.parameters(), strict=True):
        assert torch.equal(a, b)
    init = make().to(device)
    assert is_row_permutation(ddp_model[0].weight, init[0].weight)
    assert not torch.equal(ddp_model[0].weight, init[0].weight)
    plain_opt.load_state_dict(ddp_opt.state_dict())
    assert plain_opt.steps == 7


def test_repeated_syncs_equal_the_reference_and_count_moved_connections_explicitly() -> None:
    g = torch.Generator().manual_seed(5)
    weight = torch.nn.Parameter(torch.randint(-3, 4, (6, 10), generator=g).float())  # ties among the values
    initial = weight.detach().clone()
    rows = InitialRows([("w", weight)])
    previous = initial.clone()
    for _ in range(6):
        with torch.no_grad():
            weight.add_(torch.randn(weight.shape, generator=g))
        inner = weight.detach().clone()
        moved = rows.sync(count_moved=True)
        expected = reference_permutation(inner, initial)
        assert torch.equal(weight.detach(), expected)
        count = sum(int(expected[i, j] != previous[i, j]) for i in range(6) for j in range(10))
        assert moved == {"w": count}
        previous = expected


def test_randomly_permuted_rows_keep_each_rows_multiset_and_differ_across_seeds() -> None:
    def permuted(seed: int) -> torch.nn.Module:
        model = initialize(build_model("f2", DenseFactory(), (1, 28, 28), 10), 0, 0)
        return randomly_permute_rows(model, seed)

    start = initialize(build_model("f2", DenseFactory(), (1, 28, 28), 10), 0, 0)
    a, b, again = permuted(1), permuted(2), permuted(1)
    for (name, p0), pa, pb, pc in zip(
        start.named_parameters(), a.parameters(), b.parameters(), again.parameters(), strict=True
    ):
        for i in range(p0.shape[0]):  # each row: the same values, as a sorted list, in another order
            assert sorted(p0[i].tolist()) == sorted(pa[i].tolist()), name
        assert not torch.equal(pa, p0) and not torch.equal(pa, pb), name
        assert torch.equal(pa, pc), name


def test_random_permutation_baseline_trains_nothing_and_is_one_epoch(tmp_path: Path) -> None:
    config = RunConfig(method="random-permutation", dataset="synthetic", val_size=300, epochs=1)
    start = RunConfig(**{**QUICK, "epochs": 1})
    net = initial_network(config, (1, 28, 28), 10)
    seeded = initial_network(start, (1, 28, 28), 10)
    assert not any(p.requires_grad for p in net.parameters())
    for p, q in zip(net.parameters(), seeded.parameters(), strict=True):
        assert torch.equal(p.sort(dim=1).values, q.sort(dim=1).values) and not torch.equal(p, q)
    with pytest.raises(SlotlabError, match="sync_period is not an option of method random-permutation"):
        RunConfig(method="random-permutation", sync_period=5)


def test_he_uniform_is_the_papers_bound() -> None:
    config = RunConfig(**{**QUICK, "init": "he-uniform"})
    glorot = initial_network(RunConfig(**QUICK), (1, 28, 28), 10)
    net = initial_network(config, (1, 28, 28), 10)
    for p, q in zip(net.parameters(), glorot.parameters(), strict=True):
        bound = math.sqrt(6.0 / p.shape[1])  # U(-sqrt(6 / fan_in), sqrt(6 / fan_in))
        assert float(p.abs().max()) <= bound and float(p.abs().max()) > 0.99 * bound
        torch.testing.assert_close(p, q * math.sqrt((p.shape[1] + p.shape[0]) / p.shape[1]))


def test_options_that_would_change_nothing_are_refused_in_one_line() -> None:
    for option, what in (("permute_bias", "no biases"), ("permute_norm", "no normalisation")):
        config = RunConfig(**{**QUICK, option: True})
        with pytest.raises(SlotlabError, match=f"{option}: .* has {what}") as error:
            initial_network(config, (1, 28, 28), 10)
        assert "\n" not in str(error.value)


def test_the_run_records_the_moved_fraction_of_every_sync() -> None:
    config = RunConfig(**{**QUICK, "sync_period": 3, "epochs": 2, "train_size": 600})
    run = load_or_run(config, progress=False)
    moved = moved_records(run)
    steps_per_epoch = int(moved["step"].max()) // 2  # the last sync is the second epoch's end
    syncs = sorted(set(range(3, 2 * steps_per_epoch + 1, 3)) | {steps_per_epoch, 2 * steps_per_epoch})
    assert sorted(set(moved["step"])) == syncs
    assert set(moved["layer"]) == {n for n, _, kind in parameter_kinds(run.model()) if kind == "weight"}
    assert moved["fraction"].between(0, 1).all() and (moved["moved"] > 0).any()
    assert (moved["fraction"] == moved["moved"] / moved["size"]).all()
