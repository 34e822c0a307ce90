"""DistributedDataParallel: two gloo processes on the CPU train every method to identical states, agree with a
single-process run where the maths says they must, and only rank 0 writes the run folder. On a GPU, one NCCL
process (two NCCL ranks would need two GPUs) trains through DDP exactly as the plain model does."""

import os
from pathlib import Path

import pandas as pd
import pytest
import torch
import torch.multiprocessing as mp
from torch import nn

from slotlab import distributed
from slotlab.callback import Callback
from slotlab.config import RunConfig
from slotlab.data import Batches, dataset_info, epoch_generator, make_splits
from slotlab.errors import SlotlabError
from slotlab.methods import METHODS, option_specs
from slotlab.optim import make_optimizer
from slotlab.runs import initial_network, load_or_run
from slotlab.train import trainable_parameters
from tests.conftest import on_cuda

# Lenet-300-100 has no BatchNorm and no dropout: with equal shards, DDP's average of the two per-rank mean
# gradients is the gradient of the global batch's mean, so a 2-process run equals the 1-process run up to
# floating-point summation order.
BASE = dict(model="lenet300", dataset="synthetic", epochs=2, batch_size=64, train_size=256, val_size=100, k=4)
# settings that make in-place editing methods edit within these 8 steps (applied where the field exists)
EDIT_OFTEN = {
    "recycle_rate": 0.2,
    "recycle_every": 2,
    "recycle_unit": "step",
    "iterand_rate": 0.2,
    "sync_period": 3,
}
# Recycling and IteRand pick positions by score rank: a last-digit difference of the sums (as between one and two
# threads of the same process) moves positions across the rank boundary, and the runs drift apart in a few
# steps. Such runs must still agree across ranks bit for bit, but not with the single-process run.
RANK_CHAOTIC = ("recycle_rate", "iterand_rate")


def method_configs() -> dict[str, RunConfig]:
    """Every registered method that builds on the synthetic set (with frequent edits where it takes them)."""
    info = dataset_info("synthetic")
    configs = {}
    for name in METHODS:
        # the common fields and this method's options
        fields = {f for f in RunConfig().to_dict() if f not in option_specs()} | set(
            METHODS[name].options_type.names()
        )
        base = {k: v for k, v in BASE.items() if k in fields}
        often = {k: v for k, v in EDIT_OFTEN.items() if k in fields}
        for extra in (often, {}):
            try:
                config = RunConfig(method=name, **base, **extra)  # with the method's own defaults
                initial_network(config, info.input_shape, info.num_classes)
            except SlotlabError:
                continue
            configs[name] = config
            break
    mask_base = {k: v for k, v in BASE.items() if k != "k"}
    configs["edge-popup-no-edits"] = RunConfig(method="edge-popup", **mask_base)  # compared with one process
    configs["slots-sampled"] = RunConfig(method="slots", selection="sampled", lr=5.0, **BASE)
    return configs


class FinalState(Callback):
    """The model's parameters and buffers after the last epoch (before the best epoch is restored)."""

    def __init__(self) -> None:
        self.state: dict[str, torch.Tensor] = {}

    def on_epoch_end(self, trainer) -> None:
        if trainer.epoch == trainer.settings.epochs:
            self.state = {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}


def _forbid_writes(*args, **kwargs) -> None:
    raise AssertionError("a rank other than 0 wrote a file")


def _rank_main(rank: int, world: int, port: int, configs: dict, root: str, out: str) -> None:
    distributed.set_torchrun_environment(rank, world, port)
    os.environ["CI"] = "1"
    torch.set_num_threads(1)
    if rank != 0:
        import slotlab.checkpoint

        slotlab.checkpoint._atomic = _forbid_writes
    results = {}
    for name, config in configs.items():
        capture = FinalState()
        result = load_or_run(RunConfig.from_dict(config), root=root, device="cpu", callbacks=[capture])
        # plain containers, so the parent reads them back with weights_only=True
        history = result.history.to_dict("list")
        results[name] = {"state": capture.state, "history": history, "metrics": result.metrics}
    bn = nn.BatchNorm1d(3)  # BatchNorm statistics differ between shards: they are averaged before evaluating
    bn.running_mean.fill_(float(rank + 1))
    bn.running_var.fill_(float(2 * rank + 1))
    distributed.average_batchnorm_statistics(bn, distributed.current())
    results["batchnorm"] = {"state": {k: v.clone() for k, v in bn.state_dict().items()}}
    torch.save(results, Path(out) / f"rank{rank}.pt")
    distributed.shutdown()


def test_two_gloo_ranks_match_each_other_and_one_process(tmp_path: Path) -> None:
    configs = method_configs()
    assert {"slots", "dense", "learned", "edge-popup", "biprop", "laperm"} <= set(configs)
    assert (
        configs["edge-popup"].options.recycle_rate > 0 and configs["edge-popup"].options.iterand_rate > 0
    )  # edits happen
    singles = {}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the ranks: greedy selection can flip on a last-digit difference of the sums
    try:
        for name, config in configs.items():
            capture = FinalState()
            history = load_or_run(config, root=tmp_path / "single", device="cpu", callbacks=[capture]).history
            singles[name] = capture.state, history
    finally:
        torch.set_num_threads(threads)
    # spawn, not fork: after torch.compile has run in this process (slot kernels), autograd refuses a forked child
    payload = {name: c.to_dict() for name, c in configs.items()}
    args = (2, distributed.free_loopback_port(), payload, str(tmp_path / "ddp"), str(tmp_path))
    mp.start_processes(_rank_main, args=args, nprocs=2, start_method="spawn")
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    for rank in ranks:
        for result in rank.values():
            if "history" in result:
                result["history"] = pd.DataFrame(result["history"])

    for name, config in configs.items():
        zero, one = ranks[0][name], ranks[1][name]
        assert zero["state"].keys() == one["state"].keys() and zero["state"]
        for key in zero["state"]:  # parameters and buffers (values, masks, running stats): bit-identical
            assert torch.equal(zero["state"][key], one["state"][key]), f"{name}: {key} differs between ranks"
        assert zero["metrics"] == one["metrics"], name
        assert zero["history"].equals(one["history"]), name

        folder = tmp_path / "ddp" / config.name  # written by rank 0 alone (rank 1's writes raise)
        assert (folder / "result.json").is_file() and not (folder / "lock").exists()

        if any(getattr(config.options, field, 0) for field in RANK_CHAOTIC):
            continue
        single_state, single_history = singles[name]
        for key, value in single_state.items():
            close = torch.allclose(zero["state"][key].float(), value.float(), rtol=1e-3, atol=1e-5)
            assert close, f"{name}: {key} differs from the single-process run"
        ddp_history = zero["history"]
        assert ddp_history[["epoch", "split"]].equals(single_history[["epoch", "split"]])
        train = (ddp_history["split"] == "train").to_numpy()
        ddp_loss = torch.tensor(ddp_history["loss"].to_numpy()[train])
        assert torch.allclose(ddp_loss, torch.tensor(single_history["loss"].to_numpy()[train]), rtol=1e-4), (
            name
        )
        # evaluation sees every example exactly once, split over the ranks: accuracies are counts over 100 / 500
        accuracy_gap = (ddp_history["accuracy"] - single_history["accuracy"]).abs().max()
        assert accuracy_gap <= 0.02, f"{name}: accuracy differs by {accuracy_gap}"

    mean = ranks[0]["batchnorm"]["state"]
    assert torch.equal(mean["running_mean"], torch.full((3,), 1.5))
    assert torch.equal(mean["running_var"], torch.full((3,), 2.0))
    assert torch.equal(ranks[1]["batchnorm"]["state"]["running_var"], mean["running_var"])


def test_shards_interleave_the_global_order_like_distributed_sampler() -> None:
    from torch.utils.data.distributed import DistributedSampler

    order = torch.randperm(11, generator=torch.Generator().manual_seed(3))
    for world in (2, 3, 4):
        shards = [distributed.shard(order, r, world) for r in range(world)]
        assert len({len(s) for s in shards}) == 1  # equal shards: the collective calls of all ranks match
        for r, piece in enumerate(shards):  # DistributedSampler (no shuffle) over the permuted indices
            sampler = DistributedSampler(range(11), num_replicas=world, rank=r, shuffle=False)
            assert piece.tolist() == [order[i].item() for i in sampler]
        exact = [distributed.shard(order, r, world, pad=False) for r in range(world)]
        assert sorted(torch.cat(exact).tolist()) == list(range(11))  # evaluation: every example once


def test_rank_batches_together_are_the_single_process_batch_with_its_augmentation() -> None:
    splits = make_splits("synthetic-cifar", val_size=0, train_size=96)
    whole = Batches(splits.train, splits.info, 32, augment=True)
    parts = [Batches(splits.train, splits.info, 16, augment=True, rank=r, world_size=2) for r in (0, 1)]
    assert len(parts[0]) == len(whole) == 3
    streams = [p.epoch(epoch_generator(7, 0)) for p in parts]
    for images, labels in whole.epoch(epoch_generator(7, 0)):
        (x0, y0), (x1, y1) = next(streams[0]), next(streams[1])
        assert torch.equal(images[0::2], x0) and torch.equal(
            images[1::2], x1
        )  # same images, same crops and flips
        assert torch.equal(labels[0::2], y0) and torch.equal(labels[1::2], y1)


def test_global_batch_must_divide_among_ranks() -> None:
    with pytest.raises(SlotlabError, match="divisible by the 3 processes"):
        distributed.rank_batch_size(128, distributed.Context(rank=0, world_size=3))


@pytest.mark.parametrize("device", [on_cuda(torch.device("cuda"), id="cuda")], indirect=True)
def test_one_nccl_rank_on_one_gpu_trains_through_ddp_like_the_plain_model(
    device: torch.device, deterministic, monkeypatch: pytest.MonkeyPatch
) -> None:
    """slotlab's own set-up on a GPU: init_from_env joins an NCCL group (one rank, on cuda:0), prepare_model wraps
    the slot network in DDP, every score gradient goes through NCCL, and the reductions work on CUDA tensors."""
    import copy

    import torch.distributed as dist
    from torch.distributed.algorithms.ddp_comm_hooks import default_hooks

    from slotlab.layers.slot import AutogradGrad, SlotLayer

    if dist.is_initialized():
        pytest.skip("a process group is already initialised in this process")
    if not dist.is_nccl_available():
        pytest.skip("this torch has no NCCL")
    port = distributed.free_loopback_port()
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.setenv(name, "")  # put back as they were afterwards
    distributed.set_torchrun_environment(0, 1, port)
    # torchrun with one process is not counted as distributed: let init_from_env join the group anyway
    monkeypatch.setattr(distributed, "launched_by_torchrun", lambda: True)
    ctx, rank_device = distributed.init_from_env(device)
    try:
        assert dist.get_backend() == "nccl" and dist.get_world_size() == 1
        assert ctx == distributed.Context(0, 1, 0) and rank_device == torch.device("cuda", 0)
        # the context says two ranks, so that the DDP path runs; the one-process group makes every all-reduce
        # a copy and DDP's mean over ranks a division by one: the plain model's result, bit for bit
        wide = distributed.Context(0, 2, 0)
        config = RunConfig(method="slots", **BASE)
        plain = initial_network(config, (1, 28, 28), 10).to(rank_device)
        model = copy.deepcopy(plain)
        wrapped = distributed.prepare_model(model, rank_device, wide)
        assert isinstance(wrapped, nn.parallel.DistributedDataParallel)
        layers = [m for m in model.modules() if isinstance(m, SlotLayer)]
        assert layers and all(type(layer.grad_path) is AutogradGrad for layer in layers)
        reduced = []

        def counting_allreduce(state, bucket):
            reduced.append(bucket.buffer().numel())
            return default_hooks.allreduce_hook(state, bucket)

        wrapped.register_comm_hook(None, counting_allreduce)
        optimizers = [make_optimizer(config, trainable_parameters(m), m) for m in (model, plain)]
        assert all(type(opt) is torch.optim.SGD for opt in optimizers)  # no SlotSGD on CUDA
        gen = torch.Generator().manual_seed(0)
        for _ in range(3):
            x, y = torch.randn(16, 1, 28, 28, generator=gen), torch.randint(0, 10, (16,), generator=gen)
            x, y = x.to(rank_device), y.to(rank_device)
            for net, opt in zip((wrapped, plain), optimizers, strict=True):
                opt.zero_grad(set_to_none=True)
                torch.nn.functional.cross_entropy(net(x), y).backward()
                opt.step()
        trained = sum(p.numel() for p in trainable_parameters(model))
        assert sum(reduced) == 3 * trained  # every score gradient went through NCCL, every step
        start = initial_network(config, (1, 28, 28), 10).state_dict()
        for (key, a), b in zip(model.state_dict().items(), plain.state_dict().values(), strict=True):
            assert torch.equal(a, b), key
            if key.endswith("scores"):
                assert not torch.equal(a.cpu(), start[key]), key  # it trained
        # the reductions the trainer uses, on CUDA tensors through NCCL
        values = torch.tensor([1.5, -2.0, 7.0], device=rank_device)
        assert torch.equal(distributed.all_reduce_sum(values, wide), values)
        assert distributed.all_reduce_max(3.25, wide, rank_device) == 3.25
        assert distributed.broadcast_object({"refusal": None}, wide) == {"refusal": None}
        distributed.barrier(wide)
    finally:
        distributed.shutdown()
