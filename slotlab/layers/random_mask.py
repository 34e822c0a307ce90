"""A fixed random mask at the same density, with the kept weights trained: the random-pruning baseline.

What a found mask is compared with when the weights *are* learned: the mask is the top-``kept`` of random scores
drawn from the score seed (so exactly as many weights per layer as Edge-Popup keeps) and never changes; the
weights start from the same seeded init as Edge-Popup's and train under it (gradient dL/dW * M). The untrained
random subnetwork (chance accuracy) is ``slotlab.sanity.random_mask`` applied to any masked network.
"""

from __future__ import annotations

import torch
from torch import nn

from slotlab.layers.edge_popup import MaskedLayer


class RandomMaskLayer(MaskedLayer):
    """Trained weights under a fixed random mask; the scores are a frozen buffer."""

    rule = "random-mask"

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        del self.scores
        del self.weight
        self.weight = nn.Parameter(torch.empty(self.weight_shape))
        self.register_buffer("scores", torch.empty(self.weight_shape))

    def effective_weight(self) -> torch.Tensor:
        return self.weight * self.mask()
