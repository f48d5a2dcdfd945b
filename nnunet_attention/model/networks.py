"""Gated versions of the U-Nets nnU-Net plans name, built from exactly the plans' arch_kwargs."""
import inspect
from typing import Dict

from dynamic_network_architectures.architectures.unet import PlainConvUNet, ResidualEncoderUNet
from torch import nn
from torch._dynamo import OptimizedModule
from torch.nn.parallel import DistributedDataParallel

from nnunet_attention.model.decoder import AttentionUNetDecoder
from nnunet_attention.errors import NnUNetAttentionError
from nnunet_attention.model.gate import AttentionGate
from nnunet_attention.model.gate_config import GateConfig


class GatedUNetMixin:
    """Turns a dynamic-network-architectures U-Net (listed second in the bases) into its gated version.

    The U-Net builds itself from the plans' arguments as usual; then its decoder is rebuilt as an
    AttentionUNetDecoder from the same arguments (DNA's decoder reads everything else from the encoder), so every
    ungated module keeps its name and shape.

    Args (beyond the U-Net's own):
        gates: which skips are gated and how the gates start (GateConfig; the default is the paper's).
    """

    def __init__(self, *args, gates: GateConfig = GateConfig(), **kwargs):
        super().__init__(*args, **kwargs)
        arguments = inspect.signature(super().__init__).bind(*args, **kwargs)
        arguments.apply_defaults()
        a = arguments.arguments
        self.decoder = AttentionUNetDecoder(self.encoder, a["num_classes"], a["n_conv_per_stage_decoder"],
                                            a["deep_supervision"], nonlin_first=a.get("nonlin_first", False),
                                            gates=gates)

    def initialize(self, module):
        """The U-Net's own weight init (nnU-Net applies it to every module), then the gates' own start."""
        super().initialize(module)
        if isinstance(module, AttentionGate):
            module.reset_parameters()


class AttentionPlainConvUNet(GatedUNetMixin, PlainConvUNet):
    """PlainConvUNet (nnU-Net's default) with attention-gated skip connections (see AttentionUNetDecoder)."""


class AttentionResidualEncoderUNet(GatedUNetMixin, ResidualEncoderUNet):
    """ResidualEncoderUNet (nnU-Net's ResEnc M/L/XL presets) with attention-gated skip connections."""


_DNA_PREFIX = "dynamic_network_architectures.architectures.unet."
GATED_ARCHITECTURES: Dict[str, type] = {
    _DNA_PREFIX + "PlainConvUNet": AttentionPlainConvUNet,
    _DNA_PREFIX + "ResidualEncoderUNet": AttentionResidualEncoderUNet,
}


def gated_architecture(network_class_name: str) -> type:
    """The gated class for a plans' network_class_name (dotted, or bare as nnU-Net also accepts)."""
    full_name = network_class_name if "." in network_class_name else _DNA_PREFIX + network_class_name
    if full_name not in GATED_ARCHITECTURES:
        raise NnUNetAttentionError(
            f"nnunet-attention cannot gate network_class_name '{network_class_name}' from the plans; supported: "
            f"{', '.join(GATED_ARCHITECTURES)}. Train this plan with nnU-Net's own trainer or use a supported plan "
            f"(nnUNetPlans or the ResEnc presets).")
    return GATED_ARCHITECTURES[full_name]


def unwrap(network: nn.Module) -> nn.Module:
    """The bare network inside DDP and torch.compile wrappers."""
    if isinstance(network, DistributedDataParallel):
        network = network.module
    if isinstance(network, OptimizedModule):
        network = network._orig_mod
    return network


def gates_by_level(network: nn.Module) -> Dict[int, AttentionGate]:
    """Resolution level of each gated skip (0 = full resolution) -> its gate, finest first; {} if ungated."""
    decoder = getattr(unwrap(network), "decoder", None)
    return decoder.gates_by_level() if isinstance(decoder, AttentionUNetDecoder) else {}


def build_gated_network(architecture, num_input_channels: int, num_output_channels: int,
                        enable_deep_supervision: bool = True, gates: GateConfig = GateConfig()) -> nn.Module:
    """nnU-Net's get_network_from_plans with the plans' architecture swapped for its gated version; architecture is a
    ConfigurationManager or nnunet_api.Architecture (the network_arch_* attributes)."""
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans

    gated_class = gated_architecture(architecture.network_arch_class_name)
    return get_network_from_plans(
        f"{gated_class.__module__}.{gated_class.__qualname__}",
        {**architecture.network_arch_init_kwargs, "gates": gates},
        architecture.network_arch_init_kwargs_req_import,
        num_input_channels,
        num_output_channels,
        allow_init=True,
        deep_supervision=enable_deep_supervision,
    )
