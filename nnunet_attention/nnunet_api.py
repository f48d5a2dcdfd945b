"""What we take from nnU-Net beyond its command-line tools that is not a plain public import, and every difference
between the nnU-Net versions we support (SUPPORTED_NNUNET).

Held here: every call of a private nnU-Net method (the predictor's input listing and preprocessing iterator, the
trainer's loss), each with keyword arguments; the trainer built without data (built_trainer); the check that
nnU-Net's folder variables are set (require_variables); its export workers bounded by the CPU count
(bounded_export_workers); trainer lookup, model folders and dataset names through nnU-Net's own helpers; one adapter
per version difference, each naming the versions it covers (check_nnunet_version, nnunet_folder, trainer_plans,
find_trainer_class, network_builder and build_network). Public classes and helpers (PlansManager, nnUNetPredictor,
the label and reader helpers, the trainer classes our trainers subclass) are imported where they are used. Checked
against nnunetv2 2.5.2 (torch 2.5.1), 2.6.4, 2.7.0 and 2.8.1 (.ci/run tests 2.5.2 and 2.8.1; the test suite is the
check for a new version: see docs/development.md).
"""
import contextlib
import functools
import inspect
import io
import os
import sys
from importlib.metadata import version
from typing import Callable, List, NamedTuple, Optional, Tuple

from nnunet_attention.errors import NnUNetAttentionError

SUPPORTED_NNUNET = ((2, 5, 2), (2, 9))  # the oldest supported release (.ci/run tests it), the first unsupported one
# nnU-Net before 2.6 runs on torch before 2.6 only: its checkpoint loading relies on torch.load's weights_only=False
# default (torch 2.6 flipped it: --c, --val, -pretrained_weights and prediction fail) and its PolyLRScheduler passes
# the verbose argument torch 2.7 removed (training fails). (first nnU-Net without the limit, first torch it rejects)
OLD_TORCH_ONLY_BEFORE = ((2, 6), (2, 6))


def release(package: str) -> Tuple[int, ...]:
    """An installed package's release as numbers (2.8.1 -> (2, 8, 1), 2.5.1+cu124 -> (2, 5, 1))."""
    return tuple(int(part) for part in version(package).split("+")[0].split(".")[:3] if part.isdigit())


def dotted(release_numbers: Tuple[int, ...]) -> str:
    return ".".join(map(str, release_numbers))


@functools.lru_cache(maxsize=None)
def nnunet_version() -> Tuple[int, ...]:
    """The installed nnunetv2's release; read once per process."""
    return release("nnunetv2")


def torch_version() -> Tuple[int, ...]:
    return release("torch")


def torch_requirement(nnunet: Tuple[int, ...]) -> str:
    """The torch an nnU-Net release runs on, as a pip requirement (.ci/run installs it beside the oldest release)."""
    first_unlimited_nnunet, first_rejected_torch = OLD_TORCH_ONLY_BEFORE
    return f"torch<{dotted(first_rejected_torch)}" if nnunet < first_unlimited_nnunet else "torch"


def check_nnunet_version():
    """A one-line error unless the installed nnU-Net (and, before 2.6, torch) is one we support (where our trainers
    are imported, before nnU-Net would fail deep inside on a difference we do not know)."""
    oldest, first_unsupported = SUPPORTED_NNUNET
    installed = nnunet_version()
    if not oldest <= installed < first_unsupported:
        raise NnUNetAttentionError(
            f"nnunet-attention supports nnunetv2 {dotted(oldest)} up to (not including) {dotted(first_unsupported)}; "
            f"this environment has {dotted(installed)}: pip install 'nnunetv2>={dotted(oldest)},"
            f"<{dotted(first_unsupported)}' (docs/development.md)")
    first_unlimited_nnunet, first_rejected_torch = OLD_TORCH_ONLY_BEFORE
    if installed < first_unlimited_nnunet and torch_version() >= first_rejected_torch:
        raise NnUNetAttentionError(
            f"nnunetv2 {dotted(installed)} does not run on torch {dotted(torch_version())} (its checkpoint loading "
            f"and LR scheduler break from torch {dotted(first_rejected_torch)}): pip install "
            f"'{torch_requirement(installed)}', or nnunetv2 {dotted(first_unlimited_nnunet)} or later "
            f"(docs/development.md)")


def trainers_found_through_ext_folder() -> bool:
    """nnU-Net 2.8 and later search nnUNet_extTrainer for trainers (our .pth registers our folder there); 2.5 to 2.7
    search only their own nnunetv2/training/nnUNetTrainer folder (``nnunet-attention trainers --install`` puts a
    module there: model/discovery.py)."""
    return nnunet_version() >= (2, 8)


def require_variables(*names: str, why: str = ""):
    """A one-line error naming the first of nnU-Net's folder variables (nnUNet_raw, nnUNet_preprocessed,
    nnUNet_results) that is not set (nnunet_folder)."""
    for name in names:
        if nnunet_folder(name) is None:
            raise NnUNetAttentionError(f"{name} is not set{f' (needed for {why})' if why else ''}; export it as for "
                                       f"nnU-Net (documentation/setting_up_paths.md)")


def nnunet_folder(name: str) -> Optional[str]:
    """nnU-Net's folder variable (nnUNet_raw, nnUNet_preprocessed, nnUNet_results) as nnU-Net reads it: from the
    environment at the time of use (nnunetv2.paths from 2.8: objects whose str() reads it), or once at import (2.6,
    2.7: plain strings or None) -- the same value in a process that does not change these variables after starting,
    as nnU-Net's commands and ours do not. None when not set."""
    return os.environ.get(name)


def trainer_plans(plans: dict, continue_training: bool) -> dict:
    """The plans as the installed nnU-Net's trainer constructor takes them: with "continue_training" from 2.7 on (the
    constructor pops it and keeps or starts its logs by it), without it in 2.6 (it would stay in the model's plans)."""
    return {**plans, "continue_training": continue_training} if nnunet_version() >= (2, 7) else dict(plans)


def check_export_workers(environ=os.environ):
    """A one-line error unless nnUNet_def_n_proc is unset or a whole number: nnU-Net converts it with int() when
    nnunetv2.configuration is imported, so any other value is a traceback in every nnU-Net command (ours too)."""
    processes = environ.get("nnUNet_def_n_proc")
    if processes is not None and (not processes.isdigit() or int(processes) < 1):
        raise NnUNetAttentionError(f"nnUNet_def_n_proc must be a whole number of processes, got {processes!r}; "
                                   f"unset it or export e.g. nnUNet_def_n_proc=2")


def bounded_export_workers() -> str:
    """nnU-Net's number of export / validation workers (default_num_processes, 8 unless nnUNet_def_n_proc is set)
    at most the CPU count, as a value for nnUNet_def_n_proc: on fewer cores its 8 workers spend most of a small
    validation starting up."""
    from nnunetv2.configuration import default_num_processes

    return str(min(default_num_processes, os.cpu_count() or 1))


def find_trainer_class(name: str) -> type:
    """The trainer class nnU-Net's own commands would use for -tr name: its folder, then nnUNet_extTrainer (2.8 and
    later: find_objects.recursive_find_trainer_class_by_name); its folder only (2.5 to 2.7: recursive_find_python_class
    over nnunetv2/training/nnUNetTrainer, as nnUNetv2_train and the predictor search it)."""
    if not trainers_found_through_ext_folder():
        import nnunetv2
        from nnunetv2.utilities.find_class_by_name import recursive_find_python_class

        with contextlib.redirect_stdout(io.StringIO()):
            found = recursive_find_python_class(os.path.join(nnunetv2.__path__[0], "training", "nnUNetTrainer"), name,
                                                "nnunetv2.training.nnUNetTrainer")
        if found is None:
            raise NnUNetAttentionError(
                f"trainer {name} not found by nnU-Net {version('nnunetv2')} (it searches only its own trainer folder; "
                f"run nnunet-attention trainers --install once to make ours findable there)")
        return found
    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name

    settle_module_attributes()
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # nnU-Net narrates its search
            return recursive_find_trainer_class_by_name(name)
    except RuntimeError:
        raise NnUNetAttentionError(
            f"trainer {name} not found by nnU-Net (its own trainers, then nnUNet_extTrainer="
            f"{os.environ.get('nnUNet_extTrainer', '')!r}); check the name or list yours with nnunet-attention "
            f"trainers") from None


class Architecture(NamedTuple):
    """The plans' network: what build_network_architecture receives in every version (named as ConfigurationManager
    names them, so a ConfigurationManager serves where an Architecture is read)."""

    network_arch_class_name: str
    network_arch_init_kwargs: dict
    network_arch_init_kwargs_req_import: Tuple[str, ...]


def _builds_from_managers(trainer_class: type) -> bool:
    """build_network_architecture(plans_manager, configuration_manager, ...) from 2.7 on; in 2.6
    (architecture_class_name, arch_init_kwargs, arch_init_kwargs_req_import, ...). nnU-Net 2.7 and 2.8 tell the two
    apart by the parameter name, as here."""
    return "plans_manager" in inspect.signature(trainer_class.build_network_architecture).parameters


def network_builder(build: Callable) -> classmethod:
    """A trainer's build_network_architecture in the signature the installed nnU-Net calls (2.7 and later:
    plans_manager, configuration_manager, ...; 2.6: the architecture's class name, kwargs and kwargs to import, ...);
    ``build(cls, architecture, num_input_channels, num_output_channels, enable_deep_supervision)`` receives an
    Architecture either way."""
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    if _builds_from_managers(nnUNetTrainer):
        def build_network_architecture(cls, plans_manager, configuration_manager, num_input_channels: int,
                                       num_output_channels: int, enable_deep_supervision: bool = True):
            return build(cls, configuration_manager, num_input_channels, num_output_channels, enable_deep_supervision)
    else:
        def build_network_architecture(cls, architecture_class_name: str, arch_init_kwargs: dict,
                                       arch_init_kwargs_req_import, num_input_channels: int,
                                       num_output_channels: int, enable_deep_supervision: bool = True):
            return build(cls, Architecture(architecture_class_name, arch_init_kwargs, arch_init_kwargs_req_import),
                         num_input_channels, num_output_channels, enable_deep_supervision)
    build_network_architecture.__doc__ = build.__doc__
    return classmethod(build_network_architecture)


def build_network(trainer_class: type, plans_manager, configuration_manager, num_input_channels: int,
                  num_output_channels: int, enable_deep_supervision: bool = True):
    """trainer_class's network for a plans configuration, called as the installed nnU-Net calls it (any trainer,
    ours or nnU-Net's, in any supported version)."""
    if _builds_from_managers(trainer_class):
        return trainer_class.build_network_architecture(plans_manager, configuration_manager, num_input_channels,
                                                        num_output_channels, enable_deep_supervision)
    return trainer_class.build_network_architecture(
        configuration_manager.network_arch_class_name, configuration_manager.network_arch_init_kwargs,
        configuration_manager.network_arch_init_kwargs_req_import, num_input_channels, num_output_channels,
        enable_deep_supervision)


def settle_module_attributes():
    """Reads __file__ and __path__ of every loaded module until no read imports another. nnunetv2 2.8.1's trainer
    lookup through nnUNet_extTrainer (find_class_by_name.temporarily_cleanup_imports_from_path) reads them while it
    iterates sys.modules without a copy; a module whose attribute access imports more (a PEP 562 __getattr__, a lazy
    loader) then fails it with "dictionary changed size during iteration" (seen on Python 3.12 with an H200's
    packages). Reading them first, here, leaves nothing for nnU-Net's read to import, whatever was imported before."""
    size = None
    while size != len(sys.modules):
        size = len(sys.modules)
        for module in list(sys.modules.values()):
            if module is not None:
                getattr(module, "__file__", None)
                getattr(module, "__path__", None)


def model_folder(dataset: str, trainer: str, plans: str, configuration: str, fold=None) -> str:
    """nnUNet_results/DatasetX/TRAINER__PLANS__CONFIG[/fold_F], as nnU-Net's get_output_folder names it, under
    nnUNet_results as nnunet_folder reads it (get_output_folder itself takes the value nnU-Net 2.5 to 2.7 read at
    import)."""
    folder = os.path.join(nnunet_folder("nnUNet_results"), dataset_name(dataset),
                          model_identifier(trainer, plans, configuration))
    return folder if fold is None else os.path.join(folder, f"fold_{fold}")


def model_identifier(trainer: str, plans: str, configuration: str) -> str:
    from nnunetv2.utilities.file_path_utilities import convert_trainer_plans_config_to_identifier

    return convert_trainer_plans_config_to_identifier(trainer, plans, configuration)


def predictor_inputs(predictor, input_folder: str, output_folder: str) -> Tuple[List[List[str]], List[str]]:
    """(files per case, output file names without ending) for the cases in input_folder, as nnUNetv2_predict
    lists them (nnUNetPredictor._manage_input_and_output_lists, 2.8.1)."""
    with contextlib.redirect_stdout(io.StringIO()):
        inputs, outputs, _ = predictor._manage_input_and_output_lists(
            list_of_lists_or_source_folder=input_folder,
            output_folder_or_list_of_truncated_output_files=output_folder, folder_with_segs_from_prev_stage=None,
            overwrite=True, part_id=0, num_parts=1, save_probabilities=False)
    return inputs, outputs


def preprocessed_cases(predictor, inputs: List[List[str]], outputs: List[str], num_processes: int):
    """nnU-Net's background preprocessing of the input cases, yielding dicts with data, data_properties and ofile
    (nnUNetPredictor._internal_get_data_iterator_from_lists_of_filenames, 2.8.1)."""
    return predictor._internal_get_data_iterator_from_lists_of_filenames(
        input_list_of_lists=inputs, seg_from_prev_stage_files=None, output_filenames_truncated=outputs,
        num_processes=num_processes)


def built_trainer(trainer_class: type, plans: dict, configuration: str, dataset_json: dict, device):
    """The trainer with network, loss and optimizer as its initialize() sets them, without the data initialize()
    also needs: nnU-Net's own train_step then runs on batches the caller makes.

    The network comes from the public build_network_architecture, the optimizer from configure_optimizers, the loss
    (the plan's deep-supervision weights and batch_dice) from build_loss. nnU-Net's trainer constructor reads
    nnUNet_results from the process environment (nnunetv2.paths) and writes a log folder there, with no argument to
    point it elsewhere: callers run this in a process whose nnUNet_results is a scratch folder (bench runs it in a
    fresh process with a temporary one)."""
    from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels

    require_variables("nnUNet_results", why="building nnU-Net's trainer (its constructor writes a log folder there; "
                                            "a scratch folder will do)")
    with contextlib.redirect_stdout(io.StringIO()):
        trainer = trainer_class(trainer_plans(plans, continue_training=False), configuration, 0, dataset_json,
                                device=device)  # by keyword: in 2.5 the fifth positional is unpack_dataset

    trainer.network = build_network(
        trainer_class, trainer.plans_manager, trainer.configuration_manager,
        num_input_channels=determine_num_input_channels(trainer.plans_manager, trainer.configuration_manager,
                                                        dataset_json),
        num_output_channels=trainer.label_manager.num_segmentation_heads,
        enable_deep_supervision=trainer.enable_deep_supervision).to(device)
    trainer.loss = build_loss(trainer)
    trainer.optimizer, trainer.lr_scheduler = trainer.configure_optimizers()
    return trainer


def build_loss(trainer):
    """The trainer's loss as its initialize() builds it, for its current is_ddp and deep supervision
    (nnUNetTrainer._build_loss, 2.8.1)."""
    return trainer._build_loss()


def dataset_name(dataset: str) -> str:
    """DatasetXXX_Name for a name or id, as nnU-Net resolves it; an unknown one is a one-line error."""
    from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name

    try:
        return maybe_convert_to_dataset_name(dataset)
    except RuntimeError as e:
        raise NnUNetAttentionError(str(e).splitlines()[0]) from None
