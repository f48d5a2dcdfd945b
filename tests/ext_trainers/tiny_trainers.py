"""Test-only trainers, found by nnU-Net through nnUNet_extTrainer like any user's own trainer folder: short
schedules so that nnU-Net's real CLIs train, validate and predict in seconds on a CPU."""
import torch
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from nnunet_attention.model.trainers import ShortSchedule, nnUNetTrainerAttention


class _Tiny(ShortSchedule):
    """2 epochs of 2 iterations, 1 validation batch; no mirroring at validation (8x fewer forward passes); one torch
    thread on two cores (the tests train two at a time)."""

    schedule = (2, 2, 1)
    cpu_share = 2
    validation_mirroring = False


class nnUNetTrainerAttentionTiny(_Tiny, nnUNetTrainerAttention):
    pass


class nnUNetTrainerTiny(_Tiny, nnUNetTrainer):
    pass


class nnUNetTrainerAttentionTinyFrozen(nnUNetTrainerAttentionTiny):
    """Learning rate 0: the trained weights are exactly the weights training started from."""

    def configure_optimizers(self):  # not __init__: its arguments differ between nnU-Net versions (2.5: unpack_dataset)
        self.initial_lr = 0.0
        return super().configure_optimizers()


class nnUNetTrainerAttentionTinyResumable(nnUNetTrainerAttentionTiny):
    """4 epochs, and checkpoint_latest.pth after every one: something to kill and resume with --c."""

    schedule = (4, 2, 1)
    checkpoint_every = 1


class _Recording:
    """Writes what the pairing test compares to output_folder/recorded.json: a digest of every tensor of the network
    at the start (by name) and of each training batch's data and target arrays, in the order they arrive. No final
    validation: the pairing test compares batches and weights, and nnU-Net's validation (two spawned process pools)
    would be a third of each training's time."""

    def on_train_start(self):
        super().on_train_start()
        self.recorded = {"start": {k: _digest(v) for k, v in self.network.state_dict().items()}, "batches": []}

    def train_step(self, batch: dict) -> dict:
        target = batch["target"]
        self.recorded["batches"].append([_digest(batch["data"]),
                                         [_digest(t) for t in (target if isinstance(target, list) else [target])]])
        return super().train_step(batch)

    def on_train_end(self):
        super().on_train_end()
        self.write_recorded()

    def write_recorded(self):
        import json
        import os

        with open(os.path.join(self.output_folder, "recorded.json"), "w") as f:
            json.dump(self.recorded, f)

    def perform_actual_validation(self, save_probabilities: bool = False):
        self.print_to_log_file("final validation left out (a recording trainer)")


def _digest(tensor) -> str:
    import hashlib

    return hashlib.sha1(torch.as_tensor(tensor).detach().cpu().contiguous().numpy().tobytes()).hexdigest()


class nnUNetTrainerTinyRecording(_Recording, nnUNetTrainerTiny):
    pass


class nnUNetTrainerAttentionTinyRecording(_Recording, nnUNetTrainerAttentionTiny):
    pass


class nnUNetTrainerAttentionTinyResumableRecording(_Recording, nnUNetTrainerAttentionTinyResumable):
    """Recording, 4 epochs with a checkpoint after each; with NNUNET_ATTENTION_TEST_STOP_AT_EPOCH=k it writes what it
    recorded and exits (status 3) once k epochs are done, as a killed training would stop: something to resume."""

    def on_epoch_end(self):
        import os
        import sys

        super().on_epoch_end()
        if str(self.current_epoch) == os.environ.get("NNUNET_ATTENTION_TEST_STOP_AT_EPOCH"):
            self.write_recorded()
            for loader in (self.dataloader_train, self.dataloader_val):
                getattr(loader, "_finish", lambda: None)()  # its workers, as nnU-Net's on_train_end stops them
            sys.exit(3)


class nnUNetTrainerTinyOracle(nnUNetTrainerTiny):
    """Its validation 'predicts' the reference itself (the reference files copied over the network's predictions,
    then nnU-Net's own metrics): a trainer clearly better than any real one, for tests that need a known difference."""

    def perform_actual_validation(self, save_probabilities: bool = False):
        import os
        import shutil

        from nnunetv2.evaluation.evaluate_predictions import compute_metrics_on_folder

        super().perform_actual_validation(save_probabilities)
        validation = os.path.join(self.output_folder, "validation")
        references = os.path.join(self.preprocessed_dataset_folder_base, "gt_segmentations")
        ending = self.dataset_json["file_ending"]
        for name in os.listdir(validation):
            if name.endswith(ending):
                shutil.copyfile(os.path.join(references, name), os.path.join(validation, name))
        labels = self.label_manager
        compute_metrics_on_folder(references, validation, os.path.join(validation, "summary.json"),
                                  self.plans_manager.image_reader_writer_class(), ending,
                                  labels.foreground_regions if labels.has_regions else labels.foreground_labels,
                                  labels.ignore_label, chill=True, num_processes=1)
