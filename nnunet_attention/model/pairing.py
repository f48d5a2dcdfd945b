"""Paired trainings (common random numbers): both trainers of a (dataset, configuration, fold) draw the same cases,
patches and augmentations in the same order and start their shared weights equal, so that the gates are the only
difference between the two trainings of a pair.

``nnunet-attention train D C F -tr T --seed S`` runs nnU-Net's own training of trainer T (any trainer nnU-Net finds,
its own ``nnUNetTrainer`` included) as a subclass of T with the same name (``paired_trainer_class``): its folder,
checkpoint and ``nnUNetv2_predict`` stay nnU-Net's. What the subclass changes:

- the pair's seed ``pair_seed(S, dataset, configuration, fold)`` (the trainer is not part of it) seeds Python, numpy
  and torch before the network is built;
- the weights the network shares with the plan's ungated U-Net (same name and shape) are set to that U-Net's start
  for the seed; what is not shared (the gates) keeps its start drawn under the seed;
- the data pipeline: nnU-Net's loaders, under a numpy/torch state derived from the seed, driven by batchgenerators'
  MultiThreadedAugmenter (fixed worker seeds, batches taken from the workers in turn) instead of nnU-Net's
  NonDetMultiThreadedAugmenter (workers reseeded by the OS, batches in whichever order they come); with
  nnUNet_n_proc_DA=0 they run in the main process, as in nnU-Net;
- on CUDA, cuDNN deterministic and without benchmark (nnU-Net turns benchmark on).

Without ``--seed`` nothing of this happens: ``nnunet-attention train`` is not used, ``nnUNetv2_train`` is.
A resumed training (``--c``) continues from nnU-Net's checkpoint, which keeps no random states: it is paired with its
partner, but not identical to an uninterrupted run.
"""
import os
import random
import zlib
from typing import Optional

import numpy as np
import torch

from nnunet_attention.errors import NnUNetAttentionError


def pair_seed(seed: int, dataset: str, configuration: str, fold) -> int:
    """The seed both trainers of one fold share: from the study's seed and the fold's identity, not the trainer."""
    return zlib.crc32(f"{seed}|{dataset}|{configuration}|{fold}".encode())


def seed_everything(seed: int):
    random.seed(seed)
    np.random.seed(seed % 2 ** 32)
    torch.manual_seed(seed)


class _WorkerSeededLoader:
    """One augmentation worker's copy of nnU-Net's data loader. batchgenerators seeds only numpy in a worker; the
    transforms (batchgeneratorsv2) also draw from torch, so the worker seeds torch from its numpy seed too. One torch
    thread per worker, as nnU-Net's NonDetMultiThreadedAugmenter sets it: a worker forked from a training that used
    several threads hangs in torch's thread pool otherwise (seen with -device cpu on 2 threads)."""

    def __init__(self, loader, seed: int):
        self.loader, self.seed = loader, seed

    def set_thread_id(self, thread_id: int):
        torch.set_num_threads(1)  # as nnU-Net's own workers do: a forked worker must not enter the parent's pool
        torch.manual_seed(self.seed + thread_id)
        random.seed(self.seed + thread_id)
        self.loader.set_thread_id(thread_id)

    def __iter__(self):
        return self

    def __next__(self):
        return next(self.loader)


class PairedTraining:
    """Mixin (listed first) for an nnU-Net trainer: the pairing described in the module docstring.

    pair_study_seed is the study's seed S; augmentation_workers the number of workers nnU-Net would have used
    (nnUNet_n_proc_DA as the user set it), read before the train command asks nnU-Net for its single-threaded
    loaders."""

    pair_study_seed: int = 0
    augmentation_workers: int = 0

    @property
    def pair_seed(self) -> int:
        return pair_seed(self.pair_study_seed, self.plans_manager.dataset_name, self.configuration_name, self.fold)

    def initialize(self):
        if self.was_initialized:
            return super().initialize()  # nnU-Net's own error
        seed_everything(self.pair_seed)
        super().initialize()
        self._start_from_ungated_weights()
        seed_everything(self.pair_seed + 1)  # the data pipeline's stream, whatever building the network drew

    def _start_from_ungated_weights(self):
        from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
        from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels

        from nnunet_attention.model.networks import unwrap

        with torch.random.fork_rng(devices=[]):  # building the reference draws from torch only
            torch.manual_seed(self.pair_seed)
            reference = nnUNetTrainer.build_network_architecture(
                self.plans_manager, self.configuration_manager,
                determine_num_input_channels(self.plans_manager, self.configuration_manager, self.dataset_json),
                self.label_manager.num_segmentation_heads, self.enable_deep_supervision)
        network = unwrap(self.network)
        own = network.state_dict()
        shared = {k: v for k, v in reference.state_dict().items() if k in own and own[k].shape == v.shape}
        network.load_state_dict(shared, strict=False)
        self.print_to_log_file(f"Paired training: seed {self.pair_study_seed} -> pair seed {self.pair_seed} "
                               f"(dataset, configuration, fold); {len(shared)} of {len(own)} tensors start as the "
                               f"plan's ungated U-Net's for this seed; {self.augmentation_workers} augmentation "
                               f"workers in a fixed order")

    def get_dataloaders(self):
        from batchgenerators.dataloading.multi_threaded_augmenter import MultiThreadedAugmenter
        from batchgenerators.dataloading.single_threaded_augmenter import SingleThreadedAugmenter

        train, val = super().get_dataloaders()
        if not isinstance(train, SingleThreadedAugmenter):
            raise NnUNetAttentionError("paired training needs nnU-Net's loaders in the main process; run it through "
                                       "nnunet-attention train ... --seed S")
        if self.augmentation_workers == 0:
            return train, val
        pin = self.device.type == "cuda"
        workers = self.augmentation_workers
        seed = self.pair_seed % 2 ** 31
        return (MultiThreadedAugmenter(_WorkerSeededLoader(train.data_loader, seed), None, workers,
                                       num_cached_per_queue=max(2, 6 // workers),
                                       seeds=[seed + i for i in range(workers)], pin_memory=pin),
                MultiThreadedAugmenter(_WorkerSeededLoader(val.data_loader, seed + 1000), None, max(1, workers // 2),
                                       seeds=[seed + 1000 + i for i in range(max(1, workers // 2))], pin_memory=pin))


def paired_trainer_class(trainer_class: type, seed: int, augmentation_workers: int) -> type:
    """trainer_class with PairedTraining, under trainer_class's own name and module: nnU-Net names the output
    folder and the checkpoint's trainer after the class, so prediction later finds the original trainer."""
    return type(trainer_class.__name__, (PairedTraining, trainer_class),
                {"__module__": trainer_class.__module__, "__qualname__": trainer_class.__qualname__,
                 "pair_study_seed": seed, "augmentation_workers": augmentation_workers})


def run_paired_training(dataset: str, configuration: str, fold, trainer: str, seed: int, augmentation_workers: int,
                        plans: str = "nnUNetPlans", device: str = "cuda", npz: bool = False,
                        continue_training: bool = False, validation_only: bool = False,
                        pretrained_weights: Optional[str] = None):
    """nnUNetv2_train's single-device path (nnunetv2.run.run_training, 2.8.1) with the paired trainer: train unless
    validation_only, then nnU-Net's validation. The caller owns the process: it has read the augmentation workers
    nnU-Net would use and then set nnUNet_n_proc_DA=0, so that nnU-Net hands over its loaders in the main process
    (the train command does both)."""
    import json

    from nnunetv2.paths import nnUNet_preprocessed
    from nnunetv2.run.run_training import maybe_load_checkpoint

    from nnunet_attention.devices import resolve_device
    from nnunet_attention.nnunet_api import dataset_name, find_trainer_class, require_variables

    if continue_training and validation_only:
        raise NnUNetAttentionError("give --c or --val, not both")
    require_variables("nnUNet_preprocessed", "nnUNet_results", why="training")
    trainer_class = paired_trainer_class(find_trainer_class(trainer), seed, augmentation_workers)
    name = dataset_name(dataset)
    folder = os.path.join(str(nnUNet_preprocessed), name)
    plans_file = os.path.join(folder, f"{plans}.json")
    if not os.path.isfile(plans_file):
        raise NnUNetAttentionError(f"no {plans_file}; run nnUNetv2_plan_and_preprocess -d {dataset} first")
    with open(plans_file) as f:
        plans_content = {**json.load(f), "continue_training": continue_training}
    with open(os.path.join(folder, "dataset.json")) as f:
        dataset_json = json.load(f)
    device = torch.device(resolve_device(device))
    nnunet_trainer = trainer_class(plans=plans_content, configuration=configuration, fold=fold,
                                   dataset_json=dataset_json, device=device)
    maybe_load_checkpoint(nnunet_trainer, continue_training, validation_only, pretrained_weights)
    if not validation_only:
        nnunet_trainer.run_training()
    nnunet_trainer.perform_actual_validation(npz)
