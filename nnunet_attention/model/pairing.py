"""Paired trainings (common random numbers): both trainers of a (dataset, configuration, fold) draw the same cases,
patches and augmentations in the same order and start their shared weights equal, so that the gates are the only
difference between the two trainings of a pair.

``nnunet-attention train D C F -tr T --seed S`` runs nnU-Net's own training of trainer T (any trainer nnU-Net finds,
its own ``nnUNetTrainer`` included) as a subclass of T with the same name (``paired_trainer_class``): its folder,
checkpoint and ``nnUNetv2_predict`` stay nnU-Net's. What the subclass changes:

- the pair's seed ``pair_seed(S, dataset, configuration, fold)`` (the trainer is not part of it) is the root of
  independent streams (``seed_stream``: numpy's SeedSequence, one child each for Python, numpy and torch): one for
  the weights, one per training and validation batch;
- the weights the network shares with the plan's ungated U-Net (same name and shape) are set to that U-Net's start
  for the seed; what is not shared (the gates) keeps its start drawn under the seed;
- the data pipeline: nnU-Net's loaders, each batch drawn under its own stream (pair seed, loader, global batch
  index), driven by batchgenerators' MultiThreadedAugmenter (batches taken from the workers in turn) instead of
  nnU-Net's NonDetMultiThreadedAugmenter (workers reseeded by the OS, batches in whichever order they come); with
  nnUNet_n_proc_DA=0 they run in the main process, as in nnU-Net. A training resumed with ``--c`` at epoch e starts
  at batch e × iterations per epoch, so it draws exactly the batches its uninterrupted partner draws;
- on CUDA, cuDNN deterministic and without benchmark (nnU-Net turns benchmark on);
- ``pairing.json`` in the fold folder records the study seed, the pair seed, the workers, every start and resume,
  torch and cuDNN settings and the host; a resume under another seed is refused, and grid, the demo and compare
  read it (``pairing_record``) to tell a pair from two unrelated trainings.

Without ``--seed`` nothing of this happens: ``nnunet-attention train`` is not used, ``nnUNetv2_train`` is.
"""
import datetime
import json
import os
import platform
import random
import zlib
from typing import Optional

import numpy as np
import torch

from nnunet_attention.errors import NnUNetAttentionError
from nnunet_attention.model.pairing_record import PAIRING_FILE, read_pairing
from nnunet_attention.nnunet_api import build_network

SCHEME = "per-batch streams: SeedSequence(pair seed, loader, batch index)"
WEIGHTS, TRAINING_BATCHES, VALIDATION_BATCHES, MAIN = range(4)  # the streams under one pair seed


def pair_seed(seed: int, dataset: str, configuration: str, fold) -> int:
    """The seed both trainers of one fold share: from the study's seed and the fold's identity, not the trainer."""
    return zlib.crc32(f"{seed}|{dataset}|{configuration}|{fold}".encode())


def seed_stream(*key: int):
    """Seeds Python, numpy and torch from three independent children of SeedSequence(key): no two streams (nor the
    three generators of one) start from the same integer."""
    python, numpy, torch_seed = np.random.SeedSequence(list(key)).spawn(3)
    random.seed(int(python.generate_state(1, np.uint64)[0]))
    np.random.seed(numpy.generate_state(4))
    torch.manual_seed(int(torch_seed.generate_state(1, np.uint64)[0]))


class _BatchSeededLoader:
    """One augmentation worker's copy of nnU-Net's data loader that draws every batch under its own stream (pair
    seed, loader, global batch index). With W workers taken in turn, worker w draws batches first + w, first + w + W,
    ...; so the batches the trainer receives do not depend on the workers, the machine's timing or where a training
    was resumed. One torch thread per worker, as nnU-Net's NonDetMultiThreadedAugmenter sets it: a worker forked from
    a training that used several threads hangs in torch's thread pool otherwise (seen with -device cpu on 2
    threads)."""

    def __init__(self, loader, seed: int, stream: int, first_batch: int, workers: int):
        self.loader, self.seed, self.stream, self.workers = loader, seed, stream, workers
        self.first_batch = self.next_batch = first_batch

    def set_thread_id(self, thread_id: int):
        torch.set_num_threads(1)  # as nnU-Net's own workers do: a forked worker must not enter the parent's pool
        self.next_batch = self.first_batch + thread_id
        self.loader.set_thread_id(thread_id)

    def __iter__(self):
        return self

    def __next__(self):
        seed_stream(self.seed, self.stream, self.next_batch)
        self.next_batch += self.workers
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
        seed_stream(self.pair_seed, WEIGHTS)
        super().initialize()
        self._start_from_ungated_weights()
        seed_stream(self.pair_seed, MAIN)  # the main process's own draws, whatever building the network drew

    def _start_from_ungated_weights(self):
        from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
        from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels

        from nnunet_attention.model.networks import unwrap

        with torch.random.fork_rng(devices=[]):  # building the reference draws from torch only
            seed_stream(self.pair_seed, WEIGHTS)
            reference = build_network(
                nnUNetTrainer, self.plans_manager, self.configuration_manager,
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
        self._record_start()
        epoch = self.current_epoch  # a resumed training continues where its partner's batches stand
        loaders = []
        for augmenter, stream, per_epoch, workers in (
                (train, TRAINING_BATCHES, self.num_iterations_per_epoch, self.augmentation_workers),
                (val, VALIDATION_BATCHES, self.num_val_iterations_per_epoch, max(1, self.augmentation_workers // 2))):
            if self.augmentation_workers == 0:
                loaders.append(SingleThreadedAugmenter(
                    _BatchSeededLoader(augmenter.data_loader, self.pair_seed, stream, epoch * per_epoch, 1), None))
                continue
            loaders.append(MultiThreadedAugmenter(
                _BatchSeededLoader(augmenter.data_loader, self.pair_seed, stream, epoch * per_epoch, workers), None,
                workers, num_cached_per_queue=max(2, 6 // workers),
                pin_memory=self.device.type == "cuda"))
        return tuple(loaders)

    def _record_start(self):
        """pairing.json: the pair's settings and this start; a resume under another seed is an error."""
        recorded = read_pairing(self.output_folder) if self.current_epoch > 0 else None
        if self.current_epoch > 0 and (recorded is None or recorded["study_seed"] != self.pair_study_seed):
            trained = "unpaired" if recorded is None else f"with --seed {recorded['study_seed']}"
            raise NnUNetAttentionError(
                f"{self.output_folder} was trained {trained} up to epoch {self.current_epoch}; resuming it with "
                f"--seed {self.pair_study_seed} would not continue a pair: resume with "
                f"{'nnUNetv2_train --c' if recorded is None else '--seed ' + str(recorded['study_seed'])}, or start "
                f"the fold again without --c")
        record = recorded or {"study_seed": self.pair_study_seed, "pair_seed": self.pair_seed, "scheme": SCHEME,
                              "starts": []}
        record["starts"].append({
            "epoch": self.current_epoch, "time": datetime.datetime.now().isoformat(timespec="seconds"),
            "host": platform.node(), "augmentation_workers": self.augmentation_workers, "device": self.device.type,
            "torch": torch.__version__, "cudnn_deterministic": torch.backends.cudnn.deterministic,
            "cudnn_benchmark": torch.backends.cudnn.benchmark})
        os.makedirs(self.output_folder, exist_ok=True)
        with open(os.path.join(self.output_folder, PAIRING_FILE), "w") as f:
            json.dump(record, f, indent=1)


def paired_trainer_class(trainer_class: type, seed: int, augmentation_workers: int) -> type:
    """trainer_class with PairedTraining, under trainer_class's own name and module: nnU-Net names the output
    folder and the checkpoint's trainer after the class, so prediction later finds the original trainer."""
    return type(trainer_class.__name__, (PairedTraining, trainer_class),
                {"__module__": trainer_class.__module__, "__qualname__": trainer_class.__qualname__,
                 "pair_study_seed": seed, "augmentation_workers": augmentation_workers})


def run_paired_training(dataset: str, configuration: str, fold, trainer: str, seed: int, augmentation_workers: int,
                        plans: str = "nnUNetPlans", device: str = "cuda", npz: bool = False,
                        continue_training: bool = False, validation_only: bool = False,
                        pretrained_weights: Optional[str] = None, trust_checkpoint: bool = False):
    """nnUNetv2_train's single-device path (nnunetv2.run.run_training, 2.6.4 to 2.8.1) with the paired trainer: train
    unless validation_only, then nnU-Net's validation. The caller owns the process: it has read the augmentation workers
    nnU-Net would use and then set nnUNet_n_proc_DA=0, so that nnU-Net hands over its loaders in the main process
    (the train command does both)."""
    import json

    from nnunetv2.run.run_training import maybe_load_checkpoint
    from nnunetv2.utilities.file_path_utilities import get_output_folder

    from nnunet_attention.devices import resolve_device
    from nnunet_attention.model.checkpoint import check_before_nnunet_loads
    from nnunet_attention.nnunet_api import (dataset_name, find_trainer_class, nnunet_folder, require_variables,
                                             trainer_plans)

    if continue_training and validation_only:
        raise NnUNetAttentionError("give --c or --val, not both")
    require_variables("nnUNet_preprocessed", "nnUNet_results", why="training")
    trainer_class = paired_trainer_class(find_trainer_class(trainer), seed, augmentation_workers)
    name = dataset_name(dataset)
    check_before_nnunet_loads(get_output_folder(name, trainer, plans, configuration, fold), continue_training,
                              validation_only, pretrained_weights, trust_checkpoint)
    folder = os.path.join(nnunet_folder("nnUNet_preprocessed"), name)
    plans_file = os.path.join(folder, f"{plans}.json")
    if not os.path.isfile(plans_file):
        raise NnUNetAttentionError(f"no {plans_file}; run nnUNetv2_plan_and_preprocess -d {dataset} first")
    with open(plans_file) as f:
        plans_content = trainer_plans(json.load(f), continue_training)
    with open(os.path.join(folder, "dataset.json")) as f:
        dataset_json = json.load(f)
    device = torch.device(resolve_device(device))
    nnunet_trainer = trainer_class(plans=plans_content, configuration=configuration, fold=fold,
                                   dataset_json=dataset_json, device=device)
    maybe_load_checkpoint(nnunet_trainer, continue_training, validation_only, pretrained_weights)
    if not validation_only:
        nnunet_trainer.run_training()
    nnunet_trainer.perform_actual_validation(npz)
