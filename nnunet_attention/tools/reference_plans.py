"""Configurations shaped like the plans nnU-Net 2.x writes for real MSD tasks, for tests and the benchmark.

Each entry is a plans 'configurations' entry (what nnU-Net's ConfigurationManager reads): patch and batch size and
the architecture block with class name, arch_kwargs and the kwargs that need importing.
"""
from copy import deepcopy
from typing import Dict, List

_REQ_IMPORT = ["conv_op", "norm_op", "dropout_op", "nonlin"]


def _architecture(class_name: str, dim: int, features: List[int], kernel_sizes, strides, per_stage_key: str,
                  per_stage: List[int], decoder: List[int]) -> dict:
    return {
        "network_class_name": f"dynamic_network_architectures.architectures.unet.{class_name}",
        "arch_kwargs": {
            "n_stages": len(features),
            "features_per_stage": features,
            "conv_op": f"torch.nn.modules.conv.Conv{dim}d",
            "kernel_sizes": kernel_sizes,
            "strides": strides,
            per_stage_key: per_stage,
            "n_conv_per_stage_decoder": decoder,
            "conv_bias": True,
            "norm_op": f"torch.nn.modules.instancenorm.InstanceNorm{dim}d",
            "norm_op_kwargs": {"eps": 1e-05, "affine": True},
            "dropout_op": None,
            "dropout_op_kwargs": None,
            "nonlin": "torch.nn.LeakyReLU",
            "nonlin_kwargs": {"inplace": True},
        },
        "_kw_requires_import": list(_REQ_IMPORT),
    }


_CONFIGURATIONS: Dict[str, dict] = {
    # Task04_Hippocampus 3d_fullres: small isotropic patch, 4 stages
    "hippocampus_3d_fullres": {
        "patch_size": [40, 56, 40], "batch_size": 9, "batch_dice": False,  # no 3d_lowres: no batch Dice
        "architecture": _architecture("PlainConvUNet", 3, [32, 64, 128, 256], [[3, 3, 3]] * 4,
                                      [[1, 1, 1], [2, 2, 2], [2, 2, 2], [2, 2, 2]],
                                      "n_conv_per_stage", [2] * 4, [2] * 3),
    },
    # Task07_Pancreas 3d_fullres: 6 stages, anisotropic first downsampling [1, 2, 2]
    "pancreas_3d_fullres": {
        "patch_size": [40, 224, 224], "batch_size": 2, "batch_dice": True,
        "architecture": _architecture("PlainConvUNet", 3, [32, 64, 128, 256, 320, 320],
                                      [[1, 3, 3]] + [[3, 3, 3]] * 5,
                                      [[1, 1, 1], [1, 2, 2], [2, 2, 2], [2, 2, 2], [2, 2, 2], [1, 2, 2]],
                                      "n_conv_per_stage", [2] * 6, [2] * 5),
    },
    # Task07_Pancreas 2d: 8 stages up to 512 features
    "pancreas_2d": {
        "patch_size": [512, 512], "batch_size": 12, "batch_dice": True,
        "architecture": _architecture("PlainConvUNet", 2, [32, 64, 128, 256, 512, 512, 512, 512], [[3, 3]] * 8,
                                      [[1, 1]] + [[2, 2]] * 7, "n_conv_per_stage", [2] * 8, [2] * 7),
    },
    # nnUNetResEncUNetMPlans 3d_fullres for a pancreas-like task
    "pancreas_resenc_m_3d_fullres": {
        "patch_size": [40, 224, 224], "batch_size": 2, "batch_dice": True,
        "architecture": _architecture("ResidualEncoderUNet", 3, [32, 64, 128, 256, 320, 320],
                                      [[1, 3, 3]] + [[3, 3, 3]] * 5,
                                      [[1, 1, 1], [1, 2, 2], [2, 2, 2], [2, 2, 2], [2, 2, 2], [1, 2, 2]],
                                      "n_blocks_per_stage", [1, 3, 4, 6, 6, 6], [1] * 5),
    },
}


def reference_configurations() -> Dict[str, dict]:
    """name -> configuration dict (a fresh copy; callers may edit it)."""
    return deepcopy(_CONFIGURATIONS)
