"""How a network's skip connections are gated: one value that travels from the trainer to the network to the decoder.

A trainer variant sets ``gates = GateConfig(...)`` and nothing else; the network builder and the decoder read the same
value, so a new gate option is one field here, read where it takes effect.
"""
from dataclasses import dataclass
from typing import Optional, Tuple, Union

from nnunet_attention.model.gate import GATE_INITS

NAMED_LEVELS = ("all_but_finest", "all")


@dataclass(frozen=True)
class GateConfig:
    """Which skips carry gates and how the gates start.

    Args:
        init: the gates' start, one of GATE_INITS (see AttentionGate).
        levels: resolution levels of the gated skips (0 = full resolution, 1 = the next coarser, ...), or "all", or
            "all_but_finest" (the default, like the paper's code: the full-resolution gate alone costs more than all
            the others).
        deepest: gate only the n coarsest skips (instead of ``levels``).
        output_transform: add the authors' output transform W (1x1 conv + the plan's norm) to every gate.
    """

    init: str = "paper"
    levels: Union[str, Tuple[int, ...]] = "all_but_finest"
    deepest: Optional[int] = None
    output_transform: bool = False

    def __post_init__(self):
        if self.init not in GATE_INITS:
            raise ValueError(f"gate init must be one of {GATE_INITS}, got {self.init!r}")
        if isinstance(self.levels, str):
            if self.levels not in NAMED_LEVELS:
                raise ValueError(f"gated levels must be level numbers or one of {NAMED_LEVELS}, got {self.levels!r}")
        else:
            object.__setattr__(self, "levels", tuple(sorted(set(int(level) for level in self.levels))))
            if not self.levels or self.levels[0] < 0:
                raise ValueError(f"gated levels must be a non-empty list of levels >= 0, got {self.levels}")
        if self.deepest is not None and self.levels != "all_but_finest":
            raise ValueError("give the gated skips as levels or as deepest, not both")
        if self.deepest is not None and self.deepest < 1:
            raise ValueError(f"deepest must be at least 1, got {self.deepest}")

    def gated_levels(self, n_skips: int) -> Tuple[int, ...]:
        """The levels gated in a U-Net with n_skips skip connections (levels 0 .. n_skips - 1), finest first."""
        if self.deepest is not None:
            return tuple(range(max(0, n_skips - self.deepest), n_skips))
        if self.levels == "all":
            return tuple(range(n_skips))
        if not isinstance(self.levels, str):
            if self.levels[-1] >= n_skips:
                raise ValueError(f"this plan's U-Net has skips at levels 0..{n_skips - 1}; cannot gate level "
                                 f"{self.levels[-1]}")
            return self.levels
        if n_skips < 2:
            raise ValueError('this plan has a single skip connection, the finest; gate it with levels="all" '
                             '(nnUNetTrainerAttentionAllSkips)')
        return tuple(range(1, n_skips))

    def describe(self) -> str:
        """How the training log names the configuration."""
        return f"{self.init} init{', output transform' if self.output_transform else ''}"
