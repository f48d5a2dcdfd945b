"""The additive attention gate of Oktay et al. 2018 (arXiv:1804.03999), for 1D, 2D and 3D alike."""
import math
from typing import Sequence, Type, Union

import numpy as np
import torch
from dynamic_network_architectures.building_blocks.helper import convert_conv_op_to_dim
from torch import nn
from torch.nn import functional as F
from torch.nn.modules.conv import _ConvNd

GATE_INITS = ("paper", "identity")
_INTERPOLATION = {1: "linear", 2: "bilinear", 3: "trilinear"}
PAPER_PSI_BIAS = 3.0


class AttentionGate(nn.Module):
    """Weights a skip connection x by coefficients alpha in (0, 1) computed from x and the coarser gating signal g.

    theta brings x down to g's grid with a bias-free conv whose kernel equals the stride between the two levels
    (the paper found downsampling x better than upsampling g), phi is a 1x1 conv of g, and psi maps
    ReLU(theta(x) + phi(g)) to one channel; alpha = sigmoid(psi(.)) is resampled to x's exact size.

    ``init="paper"`` returns x * alpha; nnU-Net's He initialisation of the three convs and, as in the authors'
    released code, psi's bias at 3 so that the gates start mostly open (alpha around sigmoid(3) = 0.95): with a zero
    bias the random gates would halve the skips on average and training starts far behind the ungated U-Net.
    ``init="identity"`` returns x * 2 * alpha (the factor is the ``gain`` buffer, saved with the weights) and starts
    at alpha = 1/2 exactly (theta and phi's weights at zero, phi's bias at one, psi's weights distinct dyadic numbers
    summing to zero), so the gate is an exact pass-through at step 0 and yet every one of its parameters receives
    gradient from the first backward pass.
    """

    def __init__(self, conv_op: Type[_ConvNd], skip_channels: int, gating_channels: int,
                 stride: Union[int, Sequence[int]], intermediate_channels: Union[int, None] = None,
                 init: str = "paper"):
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
        self.init = init
        # part of the state_dict, so the parameterisation travels with the weights (retrofitted checkpoints)
        self.register_buffer("gain", torch.tensor(2.0 if init == "identity" else 1.0))
        self.interpolation = _INTERPOLATION[dim]
        self.record_coefficients = False
        self.coefficients = None
        self.reset_parameters()

    def make_identity(self):
        """Switches to the identity parameterisation and resets to an exact pass-through (keeps nothing learned)."""
        self.init = "identity"
        self.gain.fill_(2.0)
        self.reset_parameters()

    def reset_parameters(self):
        """Re-applies the gate's own start after a network-wide weight init (nnU-Net's He init)."""
        if self.init == "paper":
            with torch.no_grad():
                self.psi.bias.fill_(PAPER_PSI_BIAS)
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

    def attention_coefficients(self, skip: torch.Tensor, gating: torch.Tensor) -> torch.Tensor:
        """alpha on the gating grid, shape (b, 1, *theta(x).shape[2:])."""
        theta_x = self.theta(skip)
        phi_g = self.phi(gating)
        if phi_g.shape[2:] != theta_x.shape[2:]:
            # x's size is not a multiple of the stride (only off-plan inputs): meet theta's floor grid
            phi_g = F.interpolate(phi_g, size=theta_x.shape[2:], mode=self.interpolation, align_corners=False)
        return torch.sigmoid(self.psi(F.relu_(theta_x + phi_g)))

    def skip_scale(self, skip: torch.Tensor, gating: torch.Tensor) -> torch.Tensor:
        """The factor x is multiplied by, at x's size: gain * alpha resampled (shape (b, 1, *x.shape[2:]))."""
        alpha = self.attention_coefficients(skip, gating)
        if self.record_coefficients:
            self.coefficients = alpha.detach()
        return F.interpolate(alpha * self.gain, size=skip.shape[2:], mode=self.interpolation, align_corners=False)

    def forward(self, skip: torch.Tensor, gating: torch.Tensor) -> torch.Tensor:
        """The gated skip x * alpha."""
        return skip * self.skip_scale(skip, gating)

    def concat_gated(self, upsampled: torch.Tensor, skip: torch.Tensor, gating: torch.Tensor) -> torch.Tensor:
        """torch.cat((upsampled, self(skip, gating)), 1) without materialising the gated skip on its own."""
        return ScaledConcat.apply(upsampled, skip, self.skip_scale(skip, gating))

    def compute_conv_feature_map_size(self, skip_size: Sequence[int]) -> np.int64:
        """Feature map elements the gate keeps for backward (ReLU output and alpha on the coarse grid, the scale at
        the skip's size), in the unit of nnU-Net's VRAM estimate."""
        coarse = np.prod([i // j for i, j in zip(skip_size, self.stride)], dtype=np.int64)
        fine = np.prod(skip_size, dtype=np.int64)
        return (self.psi.in_channels + 1) * coarse + fine


class ScaledConcat(torch.autograd.Function):
    """cat((upsampled, skip * scale), 1), with skip scaled in place inside the concatenation.

    The plain version allocates skip * scale (as large as the skip) and then copies it into the concatenation; here
    the only extra memory kept for backward is scale, one channel at the skip's size.
    """

    @staticmethod
    def forward(ctx, upsampled, skip, scale):
        split = upsampled.shape[1]
        out = torch.cat((upsampled, skip), 1)
        out[:, split:] *= scale
        ctx.save_for_backward(skip, scale)
        ctx.split = split
        ctx.dtypes = (upsampled.dtype, skip.dtype, scale.dtype)
        return out

    @staticmethod
    def backward(ctx, grad):
        skip, scale = ctx.saved_tensors
        grad_skipped = grad[:, ctx.split:]
        grad_upsampled = grad[:, :ctx.split].to(ctx.dtypes[0]) if ctx.needs_input_grad[0] else None
        grad_skip = (grad_skipped * scale).to(ctx.dtypes[1]) if ctx.needs_input_grad[1] else None
        grad_scale = ((grad_skipped * skip).sum(1, keepdim=True).to(ctx.dtypes[2])
                      if ctx.needs_input_grad[2] else None)
        return grad_upsampled, grad_skip, grad_scale
