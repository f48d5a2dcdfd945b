"""Attention maps in the input image's geometry, from nnU-Net's own predictor.

The gates' coefficients ride along as extra output channels of the network, so nnU-Net's sliding window, Gaussian
tile weighting, mirroring and fold averaging treat them exactly as they treat the logits. The logits go to
nnU-Net's export (the segmentation nnUNetv2_predict writes); the maps go through the same resampling, crop reversal
and transpose back to the input's grid.
"""
import os
from typing import List, Optional, Sequence

import numpy as np
import SimpleITK as sitk
import torch
from acvl_utils.cropping_and_padding.bounding_boxes import insert_crop_into_image
from nnunetv2.inference.export_prediction import export_prediction_from_logits
from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO
from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
from torch import nn
from torch.nn import functional as F

from nnunet_attention.networks import gates_by_level, unwrap


class MapsError(Exception):
    """A user-fixable problem: model without gates, unknown level, unsupported file type."""


class LogitsWithAttentionMaps(nn.Module):
    """Wraps a gated network: output = cat(logits, one map per selected gate at the input's size)."""

    def __init__(self, network: nn.Module, levels: Sequence[int]):
        super().__init__()
        self.network = network
        self.levels = list(levels)
        self.gates = [gates_by_level(network)[level] for level in self.levels]

    def forward(self, x):
        for gate in self.gates:
            gate.record_coefficients = True
        try:
            logits = self.network(x)
            mode = self.gates[0].interpolation
            maps = [F.interpolate(g.coefficients, size=x.shape[2:], mode=mode, align_corners=False)
                    for g in self.gates]
        finally:
            for gate in self.gates:
                gate.record_coefficients = False
                gate.coefficients = None
        return torch.cat((logits, *[m.to(logits.dtype) for m in maps]), 1)

    def load_state_dict(self, state_dict, *args, **kwargs):
        """nnU-Net loads each fold's weights into the network it built (compiled or not) through this wrapper."""
        return unwrap(self.network).load_state_dict(state_dict, *args, **kwargs)


class _ReservesMapChannels:
    """The label manager as nnU-Net's sliding window sees it: room for the map channels after the logits."""

    def __init__(self, label_manager, extra_channels: int):
        self._label_manager = label_manager
        self.num_segmentation_heads = label_manager.num_segmentation_heads + extra_channels

    def __getattr__(self, name):
        return getattr(self._label_manager, name)


class AttentionMapPredictor(nnUNetPredictor):
    def initialize_for_maps(self, model_folder: str, folds, checkpoint_name: str, levels: Optional[List[int]]):
        self.initialize_from_trained_model_folder(model_folder, folds, checkpoint_name)
        gates = gates_by_level(self.network)
        if not gates:
            raise MapsError(f"the model in {model_folder} has no attention gates (trainer "
                            f"{self.trainer_name}); train it with nnUNetTrainerAttention or convert it with "
                            f"nnunet-attention retrofit")
        if self.configuration_manager.previous_stage_name is not None:
            raise MapsError("maps does not support cascade configurations; use 3d_fullres, 3d_lowres or 2d")
        self.levels = sorted(gates) if not levels else sorted(set(levels))
        if any(level not in gates for level in self.levels):
            raise MapsError(f"--levels must be among this model's gated levels {sorted(gates)} (0 = full "
                            f"resolution); got {levels}")
        self.segmentation_label_manager = self.label_manager
        self.label_manager = _ReservesMapChannels(self.label_manager, len(self.levels))
        self.network = LogitsWithAttentionMaps(self.network, self.levels)

    def predict_maps_from_folder(self, input_folder: str, output_folder: str, num_processes_preprocessing: int = 2,
                                 write_png: bool = True) -> List[str]:
        """Writes CASE<ending>, CASE_attention_level<L><ending> and CASE_attention.png; returns the case names."""
        if not issubclass(self.plans_manager.image_reader_writer_class, SimpleITKIO):
            raise MapsError(f"maps are written with SimpleITK; this dataset's reader "
                            f"({self.plans_manager.image_reader_writer_class.__name__}) is not SimpleITK-based")
        os.makedirs(output_folder, exist_ok=True)
        inputs, outputs, _ = self._manage_input_and_output_lists(input_folder, output_folder, None, True, 0, 1, False)
        ending = self.dataset_json["file_ending"]
        n_logits = self.segmentation_label_manager.num_segmentation_heads
        iterator = self._internal_get_data_iterator_from_lists_of_filenames(inputs, None, outputs,
                                                                           num_processes_preprocessing)
        done = []
        for i, item in enumerate(iterator, start=1):
            data, properties, ofile = item["data"], item["data_properties"], item["ofile"]
            if isinstance(data, str):
                path, data = data, torch.from_numpy(np.load(data))
                os.remove(path)
            case = os.path.basename(ofile)
            print(f"[{i}/{len(inputs)}] {case}", flush=True)
            combined = self.predict_logits_from_preprocessed_data(data).cpu()
            # the logits in the dtype nnUNetv2_predict exports them in, so the segmentation is bit-identical
            export_prediction_from_logits(combined[:n_logits].numpy(), properties, self.configuration_manager,
                                          self.plans_manager, self.dataset_json, ofile, False)
            maps = self._maps_in_input_geometry(combined[n_logits:].float().numpy(), properties)
            for level, level_map in zip(self.levels, maps):
                _write_like_input(level_map, properties, f"{ofile}_attention_level{level}{ending}")
            if write_png:
                from nnunet_attention.maps_png import write_overview

                write_overview(inputs[i - 1][0], ofile + ending, maps[0], self.levels[0], f"{ofile}_attention.png")
            done.append(case)
        return done

    def _maps_in_input_geometry(self, maps: np.ndarray, properties: dict) -> List[np.ndarray]:
        """nnU-Net's path for probabilities: resample to the cropped original grid, revert crop, revert transpose."""
        transpose_forward = self.plans_manager.transpose_forward
        spacing = [properties["spacing"][i] for i in transpose_forward]
        shape = properties["shape_after_cropping_and_before_resampling"]
        network_spacing = self.configuration_manager.spacing
        if len(network_spacing) != len(shape):
            network_spacing = [spacing[0], *network_spacing]
        resampled = self.configuration_manager.resampling_fn_probabilities(maps, shape, network_spacing, spacing)
        resampled = np.clip(np.asarray(resampled, dtype=np.float32), 0, 1)
        out = []
        for level_map in resampled:
            full = insert_crop_into_image(np.zeros(properties["shape_before_cropping"], dtype=np.float32), level_map,
                                          properties["bbox_used_for_cropping"])
            out.append(full.transpose(self.plans_manager.transpose_backward))
        return out


def _write_like_input(array: np.ndarray, properties: dict, path: str):
    """Writes a float map with the input's spacing, origin and direction, as the SimpleITK readers' write_seg does
    for segmentations (which it casts to integers)."""
    geometry = properties["sitk_stuff"]
    if len(geometry["spacing"]) == 2 and array.ndim == 3:
        array = array[0]
    image = sitk.GetImageFromArray(array.astype(np.float32))
    image.SetSpacing(geometry["spacing"])
    image.SetOrigin(geometry["origin"])
    image.SetDirection(geometry["direction"])
    if "original_orientation" in geometry:  # SimpleITKIOWithReorient read it reoriented to RAS
        image = sitk.DICOMOrient(image, geometry["original_orientation"])
    sitk.WriteImage(image, path, useCompression=True)
