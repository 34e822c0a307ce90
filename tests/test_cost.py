import math

import torch

from slotlab.config import RunConfig
from slotlab.cost import method_flops, network_flops, step_flops, steps_per_epoch, training_cost
from slotlab.init import initialize
from slotlab.layers import DenseFactory
from slotlab.models import build_model


def test_dense_lenet_step_flops_equal_the_hand_count() -> None:
    batch = 7
    model = initialize(build_model("lenet300", DenseFactory(), (1, 28, 28), 10), 0, 0)
    forward, backward = network_flops(model, torch.rand(batch, 1, 28, 28), torch.randint(0, 10, (batch,)))
    layers = [(784, 300), (300, 100), (100, 10)]
    # forward: 2 FLOPs per multiply-add of every (batch x in) @ (in x out)
    assert forward == 2 * batch * (784 * 300 + 300 * 100 + 100 * 10)
    # backward: the weight gradient of every layer (2 * batch * in * out) and the input gradient of every layer
    # but the first (its input, the image, needs none)
    weight_grads = sum(2 * batch * i * o for i, o in layers)
    input_grads = sum(2 * batch * i * o for i, o in layers[1:])
    assert (
        backward == weight_grads + input_grads == 2 * batch * 784 * 300 + 4 * batch * (300 * 100 + 100 * 10)
    )


def test_a_run_costs_steps_times_step_and_stores_what_the_method_selects() -> None:
    dense = training_cost(RunConfig(method="dense", batch_size=100, epochs=3))
    assert dense.steps_per_epoch == math.ceil((60_000 - 10_000) / 100)
    assert dense.run_flops == dense.step.total * dense.steps_per_epoch * 3
    connections = 784 * 300 + 300 * 100 + 100 * 10
    assert dense.stored_bits == 32 * connections
    slots = training_cost(RunConfig(method="slots", k=8, batch_size=100))
    assert slots.step.forward == dense.step.forward  # the same network, one value per connection at a time
    assert slots.step.method == 2 * 8 * connections  # choose among K, and K straight-through gradients
    assert slots.stored_bits >= 3 * connections and slots.stored_bits < 3 * connections + 64  # log2 K bits
    masks = training_cost(RunConfig(method="edge-popup", density=0.5, batch_size=100))
    assert masks.step.method == 4 * connections and masks.stored_bits >= connections


def test_laperm_counts_its_row_sorts_per_step() -> None:
    model = build_model("lenet300", DenseFactory(), (1, 28, 28), 10)
    slow = sum(math.ceil(p.numel() * math.log2(p.shape[1]) / 20) for p in model.parameters() if p.dim() > 1)
    assert method_flops(model, sync_period=20) == slow
    assert steps_per_epoch(RunConfig(train_size=1000, batch_size=128)) == 8


def test_a_network_with_nothing_to_train_costs_its_forward_only() -> None:
    # the random-permutation baseline trains nothing: its step is the forward pass, no backward to count
    fixed = step_flops(RunConfig(method="random-permutation", batch_size=5))
    dense = step_flops(RunConfig(method="dense", batch_size=5))
    assert fixed.forward == dense.forward == 2 * 5 * (784 * 300 + 300 * 100 + 100 * 10)
    assert fixed.backward == 0 and dense.backward > 0


def test_step_flops_grow_linearly_in_the_batch_apart_from_the_method_and_the_update() -> None:
    # benchmarks/paper_compute.py counts at a small batch and scales the network part: that must be exact
    small = step_flops(RunConfig(method="edge-popup", model="conv2", dataset="synthetic-cifar", batch_size=2))
    large = step_flops(RunConfig(method="edge-popup", model="conv2", dataset="synthetic-cifar", batch_size=6))
    assert (large.forward, large.backward) == (3 * small.forward, 3 * small.backward)
    assert (large.method, large.update) == (small.method, small.update)
