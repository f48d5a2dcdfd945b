"""The additive attention gate of Oktay et al. 2018 (arXiv:1804.03999), for 1D, 2D and 3D alike."""
import math
from typing import Optional, Sequence, Tuple, Type, Union

import numpy as np
import torch
from dynamic_network_architectures.building_blocks.helper import convert_conv_op_to_dim
from torch import nn
from torch.nn import functional as F
from torch.nn.modules.conv import _ConvNd

GATE_INITS = ("paper", "identity", "uniform")
_INTERPOLATION = {1: "linear", 2: "bilinear", 3: "trilinear"}
PAPER_PSI_BIAS = 3.0


class AttentionGate(nn.Module):
    """Computes coefficients alpha in (0, 1) for a skip connection x from x and the coarser gating signal g.

    theta brings x down to g's grid with a bias-free conv whose kernel equals the stride between the two levels
    (the paper found downsampling x better than upsampling g), phi is a 1x1 conv of g, and psi maps
    ReLU(theta(x) + phi(g)) to one channel: ``gate(x, g)`` returns alpha = sigmoid(psi(.)) on that coarse (gating)
    grid, shape (b, 1, *theta(x).shape[2:]), so a forward hook on the gate receives alpha. ``concat`` then builds
    the decoder's input cat(upsampled, x * gain * alpha), alpha resampled to x's exact size.

    ``init="paper"`` (gain 1): nnU-Net's He initialisation of the three convs and psi's bias at 3, as in the authors'
    SonoNet grid-attention block (their segmentation gate leaves it at 0), so that the gates start mostly open
    (alpha around sigmoid(3) = 0.95): with a zero bias the random gates would halve the skips on average.
    ``init="identity"`` (gain 2, the ``gain`` buffer is saved with the weights) starts at alpha = 1/2 exactly (theta
    and phi's weights at zero, phi's bias at one, psi's weights distinct dyadic numbers summing to zero), so the gate
    is an exact pass-through at step 0 and yet every one of its parameters receives gradient from the first step.
    ``init="uniform"`` (gain 1) is the paper's start with psi's weights at zero: alpha = sigmoid(3) everywhere at
    step 0, the same for every position, while theta and phi keep nnU-Net's He initialisation (they receive
    gradient once psi's weights have moved off zero, after the first step).

    Args:
        conv_op: the plans' conv class; picks 1D, 2D or 3D.
        skip_channels / gating_channels: channels of x and g.
        stride: the encoder stride between x's level and g's level (per axis; anisotropic strides work).
        intermediate_channels: F_int, default skip_channels // 2 as in the paper's code.
        init: "paper", "identity" or "uniform" (see above).
        output_norm: (norm_op, norm_op_kwargs) to add the authors' output transform W (1x1 conv + norm) applied to
            x * alpha; None (default) leaves the gated skip as it is.
    """

    def __init__(self, conv_op: Type[_ConvNd], skip_channels: int, gating_channels: int,
                 stride: Union[int, Sequence[int]], intermediate_channels: Optional[int] = None,
                 init: str = "paper", output_norm: Optional[Tuple[Type[nn.Module], Optional[dict]]] = None):
        super().__init__()
        if init not in GATE_INITS:
            raise ValueError(f"gate init must be one of {GATE_INITS}, got {init!r}")
        dim = convert_conv_op_to_dim(conv_op)
        self.stride = tuple(stride) if isinstance(stride, (list, tuple)) else (stride,) * dim
        intermediate_channels = intermediate_channels or max(1, skip_channels // 2)
        self.theta = conv_op(skip_channels, intermediate_channels, kernel_size=self.stride, stride=self.stride,
                             bias=False)
        self.phi = conv_op(gating_channels, intermediate_channels, kernel_size=1, bias=True)
        self.psi = conv_op(intermediate_channels, 1, kernel_size=1, bias=True)
        self.output_transform = None
        if output_norm is not None:
            norm_op, norm_kwargs = output_norm
            self.output_transform = nn.Sequential(conv_op(skip_channels, skip_channels, kernel_size=1, bias=True),
                                                  norm_op(skip_channels, **(norm_kwargs or {})))
        self.init = init
        # part of the state_dict, so the parameterisation travels with the weights (retrofitted checkpoints)
        self.register_buffer("gain", torch.tensor(2.0 if init == "identity" else 1.0))
        self._gain_value = float(self.gain)  # read in forward without a device sync; follows loads (below)
        self.interpolation = _INTERPOLATION[dim]
        self.reset_parameters()

    def make_identity(self):
        """Switches to the identity parameterisation and resets to an exact pass-through (keeps nothing learned)."""
        if self.output_transform is not None:
            raise ValueError("a gate with an output transform cannot be an exact pass-through")
        self.init = "identity"
        self.gain.fill_(2.0)
        self._gain_value = 2.0
        self.reset_parameters()

    def reset_parameters(self):
        """Re-applies the gate's own start after a network-wide weight init (nnU-Net's He init)."""
        if self.init in ("paper", "uniform"):
            with torch.no_grad():
                self.psi.bias.fill_(PAPER_PSI_BIAS)
                if self.init == "uniform":
                    self.psi.weight.zero_()
            return
        n = self.psi.in_channels
        psi_steps = torch.arange(n, dtype=torch.float64) * 2 - (n - 1)
        psi_scale = 2.0 ** -(math.ceil(math.log2(max(n, 2))) + 3)
        with torch.no_grad():
            self.theta.weight.zero_()
            self.phi.weight.zero_()
            self.phi.bias.fill_(1.0)
            self.psi.weight.copy_((psi_steps * psi_scale).view_as(self.psi.weight))
            self.psi.bias.zero_()

    def _load_from_state_dict(self, *args, **kwargs):
        super()._load_from_state_dict(*args, **kwargs)
        self._gain_value = float(self.gain)

    def forward(self, skip: torch.Tensor, gating: torch.Tensor) -> torch.Tensor:
        """alpha in (0, 1) on the gating grid, shape (b, 1, *theta(x).shape[2:])."""
        theta_x = self.theta(skip)
        phi_g = self.phi(gating)
        if phi_g.shape[2:] != theta_x.shape[2:]:
            # x's size is not a multiple of the stride (only off-plan inputs): meet theta's floor grid
            phi_g = F.interpolate(phi_g, size=theta_x.shape[2:], mode=self.interpolation, align_corners=False)
        return torch.sigmoid(self.psi(F.relu_(theta_x + phi_g)))

    def upsample(self, alpha: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
        """alpha (or any map on the gating grid) resampled to the skip's size, as the gate applies it."""
        return F.interpolate(alpha, size=tuple(size), mode=self.interpolation, align_corners=False)

    def skip_scale(self, skip: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
        """The factor x is multiplied by: gain * alpha at x's size. The gain is applied on the coarse grid, and not at
        all when it is 1 (the paper's start): one kernel fewer forward and backward."""
        return self.upsample(alpha if self._gain_value == 1.0 else alpha * self._gain_value, skip.shape[2:])

    def gated_skip(self, skip: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
        """x * gain * alpha (through the output transform when there is one)."""
        gated = skip * self.skip_scale(skip, alpha)
        return gated if self.output_transform is None else self.output_transform(gated)

    def concat(self, upsampled: torch.Tensor, skip: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
        """The decoder's input cat((upsampled, x * gain * alpha), 1). Autograd keeps only the one-channel scale
        beyond what the network keeps anyway (the product is not saved; cat saves nothing), so no custom
        autograd function is needed: plain operators that torch.compile fuses."""
        return torch.cat((upsampled, self.gated_skip(skip, alpha)), 1)

    def compute_conv_feature_map_size(self, skip_size: Sequence[int]) -> np.int64:
        """Feature map elements the gate keeps for backward (ReLU output and alpha on the coarse grid, the scale at
        the skip's size; with the output transform also x * alpha and the conv and norm outputs), in the unit of
        nnU-Net's VRAM estimate."""
        coarse = np.prod([i // j for i, j in zip(skip_size, self.stride)], dtype=np.int64)
        fine = np.prod(skip_size, dtype=np.int64)
        size = (self.psi.in_channels + 1) * coarse + fine
        if self.output_transform is not None:
            size += 3 * self.theta.in_channels * fine
        return np.int64(size)
