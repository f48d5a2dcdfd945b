"""A dynamic-network-architectures UNetDecoder whose skip connections pass through attention gates."""
from typing import Dict, List, Tuple, Type, Union

import numpy as np
import torch
from dynamic_network_architectures.building_blocks.plain_conv_encoder import PlainConvEncoder
from dynamic_network_architectures.building_blocks.residual_encoders import ResidualEncoder
from dynamic_network_architectures.building_blocks.unet_decoder import UNetDecoder
from torch import nn
from torch.nn.modules.dropout import _DropoutNd

from nnunet_attention.model.gate import AttentionGate
from nnunet_attention.model.gate_config import GateConfig


class AttentionUNetDecoder(UNetDecoder):
    """UNetDecoder plus a gate on each skip the GateConfig names; every UNetDecoder module keeps its name, so plain
    weights load.

    ``attention_gates`` holds the gates coarsest first, like ``stages``; the gate of decoder stage s gates the skip
    that stage concatenates, with the features that stage is about to upsample (the bottleneck for s = 0) as gating
    signal, and its theta stride is the encoder stride between those two levels. Each gate is called as a module and
    returns its alpha; the decoder builds the scaled concatenation from it.

    Args (beyond UNetDecoder's, all of which are passed on unchanged):
        gates: which skips are gated and how the gates start (GateConfig; the default is the paper's).
    """

    def __init__(self, encoder: Union[PlainConvEncoder, ResidualEncoder], num_classes: int,
                 n_conv_per_stage: Union[int, Tuple[int, ...], List[int]], deep_supervision: bool,
                 nonlin_first: bool = False, norm_op: Union[None, Type[nn.Module]] = None,
                 norm_op_kwargs: dict = None, dropout_op: Union[None, Type[_DropoutNd]] = None,
                 dropout_op_kwargs: dict = None, nonlin: Union[None, Type[torch.nn.Module]] = None,
                 nonlin_kwargs: dict = None, conv_bias: bool = None, *, gates: GateConfig = GateConfig()):
        super().__init__(encoder, num_classes, n_conv_per_stage, deep_supervision, nonlin_first=nonlin_first,
                         norm_op=norm_op, norm_op_kwargs=norm_op_kwargs, dropout_op=dropout_op,
                         dropout_op_kwargs=dropout_op_kwargs, nonlin=nonlin, nonlin_kwargs=nonlin_kwargs,
                         conv_bias=conv_bias)
        gated_stages = sorted(len(self.stages) - 1 - level for level in gates.gated_levels(len(self.stages)))
        output_norm = None
        if gates.output_transform:
            output_norm = (encoder.norm_op if norm_op is None else norm_op,
                           encoder.norm_op_kwargs if norm_op_kwargs is None else norm_op_kwargs)
        self.attention_gates = nn.ModuleList(
            AttentionGate(encoder.conv_op, encoder.output_channels[-(s + 2)], encoder.output_channels[-(s + 1)],
                          encoder.strides[-(s + 1)], init=gates.init, output_norm=output_norm)
            for s in gated_stages
        )
        self.gate_of_stage = {s: index for index, s in enumerate(gated_stages)}
        self.deep_supervision = deep_supervision  # now that seg_layers exist: sets which heads train

    @property
    def deep_supervision(self) -> bool:
        return self._deep_supervision

    @deep_supervision.setter
    def deep_supervision(self, enabled: bool):
        """nnU-Net's set_deep_supervision_enabled lands here. Without deep supervision only the last head produces
        output, so the others stop requiring grad: DistributedDataParallel (nnU-Net wraps without
        find_unused_parameters) would otherwise wait for their gradients and fail at the second step. The heads stay
        in the network, so checkpoints load either way."""
        self._deep_supervision = bool(enabled)
        for head in list(getattr(self, "seg_layers", []))[:-1]:
            head.requires_grad_(self._deep_supervision)

    def forward(self, skips):
        lres_input = skips[-1]
        seg_outputs = []
        for s in range(len(self.stages)):
            upsampled = self.transpconvs[s](lres_input)
            skip = skips[-(s + 2)]
            if s in self.gate_of_stage:
                gate = self.attention_gates[self.gate_of_stage[s]]
                x = gate.concat(upsampled, skip, gate(skip, lres_input))
            else:
                x = torch.cat((upsampled, skip), 1)
            x = self.stages[s](x)
            if self.deep_supervision:
                seg_outputs.append(self.seg_layers[s](x))
            elif s == len(self.stages) - 1:
                seg_outputs.append(self.seg_layers[-1](x))
            lres_input = x
        seg_outputs = seg_outputs[::-1]
        return seg_outputs if self.deep_supervision else seg_outputs[0]

    def gates_by_level(self) -> Dict[int, AttentionGate]:
        """Resolution level of the gated skip (0 = full resolution) -> its gate, finest first."""
        return {len(self.stages) - 1 - s: self.attention_gates[index]
                for s, index in sorted(self.gate_of_stage.items(), reverse=True)}

    def compute_conv_feature_map_size(self, input_size):
        total = super().compute_conv_feature_map_size(input_size)
        gates = self.gates_by_level()
        skip_size = list(input_size)
        for level, stride in enumerate(self.encoder.strides[:-1]):
            skip_size = [i // j for i, j in zip(skip_size, stride)]
            if level in gates:
                total += gates[level].compute_conv_feature_map_size(skip_size)
        return np.int64(total)
