"""Layer rules: one module per method, and the factory that lets every model use every rule."""

from slotlab.layers.dense import DenseFactory
from slotlab.layers.factory import LayerFactory, RandomWeightLayer, SelectingLayer
from slotlab.layers.slot import SlotConv2d, SlotFactory, SlotLayer, SlotLinear

__all__ = [
    "DenseFactory",
    "LayerFactory",
    "RandomWeightLayer",
    "SelectingLayer",
    "SlotConv2d",
    "SlotFactory",
    "SlotLayer",
    "SlotLinear",
]
