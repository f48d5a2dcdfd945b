"""Attention maps in the input image's geometry, from nnU-Net's own predictor.

The gates' coefficients ride along as extra output channels of the network, so nnU-Net's sliding window, Gaussian
tile weighting, mirroring and fold averaging treat them exactly as they treat the logits. The logits go to
nnU-Net's export (the segmentation nnUNetv2_predict writes); the maps go through the same resampling, crop reversal
and transpose back to the input's grid.
"""
import csv
import os
import re
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import SimpleITK as sitk
import torch
from acvl_utils.cropping_and_padding.bounding_boxes import insert_crop_into_image
from nnunetv2.inference.export_prediction import convert_predicted_logits_to_segmentation_with_correct_shape
from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO
from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels
from torch import nn
from torch.nn import functional as F

from nnunet_attention.model.checkpoint import load_checkpoint
from nnunet_attention.errors import NnUNetAttentionError
from nnunet_attention.model.networks import gates_by_level, unwrap
from nnunet_attention.files import inside
from nnunet_attention.nnunet_api import nnunet_folder, predictor_inputs, preprocessed_cases
from nnunet_attention.figures import pdf_beside


class LogitsWithAttentionMaps(nn.Module):
    """Wraps a gated network: output = cat(logits, one map per selected gate at the input's size).

    Each selected gate gets a forward hook that keeps the alpha it returns (on its gating grid), so the maps are
    exactly what the gates computed in that forward pass."""

    def __init__(self, network: nn.Module, levels: Sequence[int]):
        super().__init__()
        self.network = network
        self.levels = list(levels)
        gates = gates_by_level(network)
        self._alphas: Dict[int, torch.Tensor] = {}
        self._hooks = [gates[level].register_forward_hook(self._keeper(level)) for level in self.levels]
        self.interpolation = gates[self.levels[0]].interpolation

    def _keeper(self, level: int):
        def keep(gate, inputs, alpha):
            self._alphas[level] = alpha.detach()
        return keep

    def forward(self, x):
        self._alphas.clear()
        logits = self.network(x)
        maps = [F.interpolate(self._alphas.pop(level), size=x.shape[2:], mode=self.interpolation,
                              align_corners=False) for level in self.levels]
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
    def initialize_for_maps(self, model_folder: str, folds, checkpoint_name: str, levels: Optional[List[int]],
                            trust_checkpoint: bool = False):
        """nnU-Net's initialize_from_trained_model_folder, after every fold's checkpoint has been read safely
        (weights_only, see checkpoint.py): nnU-Net's own loader then only meets types that run no code."""
        for fold in folds:
            path = os.path.join(model_folder, f"fold_{fold}", checkpoint_name)
            if not os.path.isfile(path):
                raise NnUNetAttentionError(f"no checkpoint {path}; train that fold first, or pick -f / -chk")
            if not trust_checkpoint:
                load_checkpoint(path, mmap=True)
        self.initialize_from_trained_model_folder(model_folder, folds, checkpoint_name)
        gates = gates_by_level(self.network)
        if not gates:
            raise NnUNetAttentionError(f"the model in {model_folder} has no attention gates (trainer "
                                       f"{self.trainer_name}); train it with nnUNetTrainerAttention or convert it with "
                            f"nnunet-attention retrofit")
        if self.configuration_manager.previous_stage_name is not None:
            raise NnUNetAttentionError("maps does not support cascade configurations; use 3d_fullres, 3d_lowres or 2d")
        self.levels = sorted(gates) if not levels else sorted(set(levels))
        if any(level not in gates for level in self.levels):
            raise NnUNetAttentionError(f"--levels must be among this model's gated levels {sorted(gates)} (0 = full "
                                       f"resolution); got {levels}")
        self.segmentation_label_manager = self.label_manager
        self.label_manager = _ReservesMapChannels(self.label_manager, len(self.levels))
        self.network = LogitsWithAttentionMaps(self.network, self.levels)

    def predict_maps_from_folder(self, input_folder: str, output_folder: str, num_processes_preprocessing: int = 2,
                                 write_png: bool = True, overwrite: bool = False) -> Tuple[List[str], List[dict]]:
        """Writes CASE<ending>, CASE_attention_level<L><ending>, CASE_attention.png (and .pdf) and
        attention_summary.csv;
        returns the case names and the summary rows."""
        if not issubclass(self.plans_manager.image_reader_writer_class, SimpleITKIO):
            raise NnUNetAttentionError(f"maps are written with SimpleITK; this dataset's reader "
                                       f"({self.plans_manager.image_reader_writer_class.__name__}) is not "
                                       f"SimpleITK-based")
        check_input_folder(input_folder, self.dataset_json["file_ending"],
                           determine_num_input_channels(self.plans_manager, self.configuration_manager,
                                                        self.dataset_json))
        inputs, outputs = predictor_inputs(self, input_folder, output_folder)
        ending = self.dataset_json["file_ending"]
        if not overwrite:
            refuse_replacing(output_folder, [path for ofile in outputs for path in (
                ofile + ending, *(f"{ofile}_attention_level{level}{ending}" for level in self.levels),
                *([f"{ofile}_attention.png", pdf_beside(f"{ofile}_attention.png")] if write_png else []))]
                + [os.path.join(output_folder, SUMMARY_FILE)])
        os.makedirs(output_folder, exist_ok=True)
        n_logits = self.segmentation_label_manager.num_segmentation_heads
        iterator = preprocessed_cases(self, inputs, outputs, num_processes_preprocessing)
        done, summary = [], []
        for i, item in enumerate(iterator, start=1):
            data, properties, ofile = item["data"], item["data_properties"], item["ofile"]
            if isinstance(data, str):
                path, data = data, torch.from_numpy(np.load(data))
                os.remove(path)
            case = os.path.basename(ofile)
            print(f"[{i}/{len(inputs)}] {case}", flush=True)
            combined = self.predict_logits_from_preprocessed_data(data).cpu()
            # the two steps of nnU-Net's export_prediction_from_logits, keeping the segmentation for the summary and
            # the PNG; the logits in the dtype nnUNetv2_predict exports them in, so the file is bit-identical
            segmentation = convert_predicted_logits_to_segmentation_with_correct_shape(
                combined[:n_logits].numpy(), self.plans_manager, self.configuration_manager,
                self.segmentation_label_manager, properties, return_probabilities=False)
            self.plans_manager.image_reader_writer_class().write_seg(segmentation, ofile + ending, properties)
            maps, region = self._maps_in_input_geometry(combined[n_logits:].float().numpy(), properties)
            for level, level_map in zip(self.levels, maps):
                _write_like_input(level_map, properties, f"{ofile}_attention_level{level}{ending}")
            summary += [attention_summary(case, level, level_map, segmentation > 0, region)
                        for level, level_map in zip(self.levels, maps)]
            if write_png:
                from nnunet_attention.tools.maps_png import write_overview

                write_overview(inputs[i - 1][0], segmentation, dict(zip(self.levels, maps)),
                               f"{ofile}_attention.png")
            done.append(case)
        _write_summary(summary, os.path.join(output_folder, SUMMARY_FILE))
        return done, summary

    def _maps_in_input_geometry(self, maps: np.ndarray, properties: dict) -> Tuple[List[np.ndarray], np.ndarray]:
        """nnU-Net's path for probabilities: resample to the cropped original grid, revert crop, revert transpose.
        Also returns the region nnU-Net processed (its crop) in the same geometry, as a boolean mask."""
        transpose_forward = self.plans_manager.transpose_forward
        spacing = [properties["spacing"][i] for i in transpose_forward]
        shape = properties["shape_after_cropping_and_before_resampling"]
        network_spacing = self.configuration_manager.spacing
        if len(network_spacing) != len(shape):
            network_spacing = [spacing[0], *network_spacing]
        resampled = self.configuration_manager.resampling_fn_probabilities(maps, shape, network_spacing, spacing)
        resampled = np.clip(np.asarray(resampled, dtype=np.float32), 0, 1)
        def uncrop(array, dtype):
            full = insert_crop_into_image(np.zeros(properties["shape_before_cropping"], dtype=dtype), array,
                                          properties["bbox_used_for_cropping"])
            return full.transpose(self.plans_manager.transpose_backward)

        region = uncrop(np.ones(resampled.shape[1:], dtype=bool), bool)
        return [uncrop(level_map, np.float32) for level_map in resampled], region


def check_input_folder(folder: str, ending: str, channels: int):
    """Refuses, in one line each, what nnU-Net's predictor would fail on later with a bare traceback: no images
    with the dataset's file ending, names without the _XXXX channel suffix, cases with the wrong channel count, files
    that are no image (its workers die with "Background workers died")."""
    names = sorted(os.listdir(folder))
    images = [n for n in names if n.endswith(ending)]
    if not images:
        endings = sorted({n[n.find("."):] for n in names if "." in n})
        raise NnUNetAttentionError(f"no {ending} images in {folder} (found: {', '.join(endings) or 'nothing'}); "
                                   f"nnU-Net expects CASE_0000{ending}, one file per channel")
    cases: Dict[str, List[str]] = {}
    for name in images:
        match = re.fullmatch(r"(.+)_(\d{4})" + re.escape(ending), name)
        if not match:
            raise NnUNetAttentionError(f"{os.path.join(folder, name)} lacks the channel suffix: name it "
                                       f"CASE_0000{ending} (CASE_0001{ending} for a second channel), as "
                                       f"nnUNetv2_predict expects")
        cases.setdefault(match.group(1), []).append(match.group(2))
    for case, found in cases.items():
        if sorted(found) != [f"{c:04d}" for c in range(channels)]:
            raise NnUNetAttentionError(f"case {case} in {folder} has channel files {', '.join(sorted(found))}; this "
                                       f"model takes {channels} channel(s): "
                                       f"{', '.join(f'{case}_{c:04d}{ending}' for c in range(channels))}")
    for name in images:
        reader = sitk.ImageFileReader()
        reader.SetFileName(os.path.join(folder, name))
        try:
            reader.ReadImageInformation()
        except RuntimeError:
            raise NnUNetAttentionError(f"{os.path.join(folder, name)} is not an image SimpleITK can read (damaged, "
                                       f"or not a {ending} file); replace it or take it out of -i") from None


SUMMARY_FILE = "attention_summary.csv"
SUMMARY_FIELDS = ("case", "level", "mean_alpha_foreground", "mean_alpha_elsewhere", "foreground_voxels",
                  "region_voxels")


def attention_summary(case: str, level: int, alpha: np.ndarray, foreground: np.ndarray, region: np.ndarray) -> dict:
    """Mean alpha inside the predicted foreground and elsewhere in the processed region (NaN where empty)."""
    inside, elsewhere = alpha[foreground & region], alpha[~foreground & region]
    return {"case": case, "level": level,
            "mean_alpha_foreground": float(inside.mean()) if inside.size else float("nan"),
            "mean_alpha_elsewhere": float(elsewhere.mean()) if elsewhere.size else float("nan"),
            "foreground_voxels": int(inside.size), "region_voxels": int(region.sum())}


def _write_summary(rows: List[dict], path: str):
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=SUMMARY_FIELDS)
        writer.writeheader()
        writer.writerows(rows)


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


def refuse_replacing(output_folder: str, planned: Sequence[str]):
    """A one-line error when files maps would write already exist in output_folder (an nnU-Net validation folder
    or a labelsTr holds files of the same names)."""
    existing = [p for p in planned if os.path.exists(p)]
    if existing:
        raise NnUNetAttentionError(f"-o {output_folder} already holds {len(existing)} file(s) maps would replace "
                                   f"(e.g. {os.path.basename(existing[0])}); choose an empty folder, or pass "
                                   f"--overwrite to replace them")


def refuse_nnunet_data_folders(output_folder: str):
    """nnUNet_raw and nnUNet_preprocessed hold datasets: no predictions or maps go there."""
    for name in ("nnUNet_raw", "nnUNet_preprocessed"):
        root = nnunet_folder(name)
        if root and inside(output_folder, root):
            raise NnUNetAttentionError(f"-o {output_folder} is inside {name} ({root}), which holds nnU-Net's "
                                       f"datasets; write the maps to another folder")


def run_maps(input_folder: str, output_folder: str, dataset: str, configuration: str, trainer: str, plans: str,
             folds: Sequence, checkpoint_name: str, levels: Optional[List[int]], device: Optional[str],
             tile_step_size: float = 0.5, use_mirroring: bool = True, num_processes: int = 2, write_png: bool = True,
             trust_checkpoint: bool = False, progress_bar: bool = True, overwrite: bool = False) -> List[str]:
    """The maps command: checks its inputs, predicts, writes; returns the lines it reports (mean alpha per level).
    Files of the same names in output_folder are replaced only with overwrite; nnU-Net's raw and preprocessed
    folders are never an output."""
    from nnunet_attention.devices import resolve_device
    from nnunet_attention.files import check_output_folder
    from nnunet_attention.nnunet_api import dataset_name, model_folder, require_variables

    device = resolve_device(device)
    if not os.path.isdir(input_folder):
        raise NnUNetAttentionError(f"input folder not found: {input_folder}")
    if num_processes < 1:
        raise NnUNetAttentionError(f"-npp must be at least 1, got {num_processes}")
    if not 0 < tile_step_size <= 1:
        raise NnUNetAttentionError(f"-step_size must be in (0, 1] (a fraction of the patch size), got {tile_step_size}")
    check_output_folder(output_folder, input_folder)
    refuse_nnunet_data_folders(output_folder)
    require_variables("nnUNet_results")
    folder = model_folder(dataset_name(dataset), trainer, plans, configuration)
    if not os.path.isdir(folder):
        raise NnUNetAttentionError(f"no trained model at {folder}; check -d, -c, -tr and -p")
    predictor = AttentionMapPredictor(tile_step_size=tile_step_size, use_gaussian=True, use_mirroring=use_mirroring,
                                      perform_everything_on_device=device == "cuda", device=torch.device(device),
                                      allow_tqdm=progress_bar)
    try:
        predictor.initialize_for_maps(folder, folds, checkpoint_name, levels, trust_checkpoint)
        cases, summary = predictor.predict_maps_from_folder(input_folder, output_folder, num_processes, write_png,
                                                            overwrite)
    except FileNotFoundError as e:
        raise NnUNetAttentionError(f"not found: {e.filename or e} (train that fold first, or pick -f / -chk)") from None
    lines = []
    for level in predictor.levels:
        rows = [r for r in summary if r["level"] == level]
        inside = [r["mean_alpha_foreground"] for r in rows if r["foreground_voxels"]]
        elsewhere = [r["mean_alpha_elsewhere"] for r in rows]
        lines.append(f"level {level}: mean alpha {sum(inside) / len(inside) if inside else float('nan'):.3f} in the "
                     f"predicted foreground, {sum(elsewhere) / len(elsewhere):.3f} elsewhere (mean over cases)")
    return lines + [f"{len(cases)} case(s): segmentations, attention maps and attention_summary.csv in "
                    f"{output_folder}"]
