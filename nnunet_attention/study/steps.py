"""The steps of a gated-vs-ungated study as nnU-Net commands: plan, train (new, --c, --val), find_best, and the
prediction with find_best's choice (predict per member, ensemble, postprocessing). Each step has its command, its
done-ness read from the files nnU-Net writes (progress_files.py) and the steps it must wait for (a cascade fold waits
for the same trainer's lowres fold, find_best for every training, ensembling for its members' predictions). grid,
demo and the study scripts build their pipelines from here; executors (executor.py: submitit jobs in grid, processes
elsewhere) only run them, in the environment they were given. The state names (NEW, RESUME, VALIDATE, TRAINED for a
training; DONE for any other step) are this module's to export. compare is not an nnU-Net command: grid and the demo
call it in this process once find_best is done; it reads what these steps leave."""
import json
import os
from dataclasses import dataclass, field, replace
from typing import Callable, List, Optional, Sequence, Tuple

from nnunet_attention.errors import NnUNetAttentionError
from nnunet_attention.files import write_text
from nnunet_attention.nnunet_api import model_identifier
from nnunet_attention.study.progress_files import (  # noqa: F401  (RESUME, VALIDATE, epoch_reached: re-exported)
    NEW, RESUME, TRAINED, VALIDATE, epoch_reached, found_best_for, newer_than, replaced_training, train_command,
    training_state)

CASCADE = "3d_cascade_fullres"
DEFAULT_CONFIGURATIONS = ("2d", "3d_fullres", "3d_lowres", CASCADE)  # what nnU-Net's default planner may make
NNUNET_FOLDS = 5  # the folds nnU-Net's splits_final.json holds when nnU-Net writes it
NNUNET_FOLD_IDS = tuple(range(NNUNET_FOLDS))  # nnU-Net's own folds, the default of every -f
DONE = "done"  # the state of a finished plan, find_best or prediction (a finished training is TRAINED)
PREDICTED = "done.json"  # beside the predictions: written once every prediction step has run, names the models


@dataclass(frozen=True)
class Step:
    """One nnU-Net command of the study: kind plan / train / find_best; what it runs; how to tell from the files
    that it is done; the keys of the steps that must be done before it starts."""
    kind: str
    dataset: str
    command: tuple
    configuration: str = ""
    fold: str = ""
    trainer: str = ""
    state: str = NEW  # for train steps: progress_files' state; else NEW or DONE
    after: tuple = ()
    replaces: str = ""  # for train steps: the training it would replace (replaced_training), in words
    check: Callable[[], str] = field(default=lambda: NEW, compare=False, repr=False)  # reads the state again

    @property
    def key(self) -> str:
        return "/".join(p for p in (self.kind, self.dataset, self.configuration, self.fold and f"fold_{self.fold}",
                                    self.trainer) if p)

    @property
    def done(self) -> bool:
        return self.state in (TRAINED, DONE)

    def refreshed(self) -> "Step":
        """The step with its state read again from nnU-Net's files."""
        return replace(self, state=self.check())


@dataclass
class StudySpec:
    """What a study trains (grid, the demo, init_study, gpu_check): datasets (DatasetXXX_Name) x configurations x
    folds (ints or "all") x trainers."""
    datasets: Sequence[str]
    configurations: Sequence[str]
    folds: Sequence
    trainers: Sequence[str]
    plans: str = "nnUNetPlans"
    device: str = "cuda"
    npz: bool = True
    processes: Optional[int] = None  # -npfp and -np of planning, -np of find_best (None: nnU-Net's defaults)
    seed: Optional[int] = None  # paired trainings (pairing.py) with this study seed; None: nnUNetv2_train as is
    trust_checkpoints: bool = False  # --trust-checkpoint: let nnU-Net unpickle checkpoints the safe loader refuses
    retrain_other_seeds: bool = False  # --retrain-other-seeds: replace folds trained unpaired or under another seed

    def __post_init__(self):
        if len(set(self.trainers)) < 2:
            raise NnUNetAttentionError("-tr needs at least two different trainers (e.g. nnUNetTrainer "
                                       "nnUNetTrainerAttention)")


@dataclass(frozen=True)
class Folders:
    """nnU-Net's roots the steps read (the process's own variables by default; the demo passes its work folder's);
    raw only where a task is converted."""
    preprocessed: str
    results: str
    raw: Optional[str] = None

    @classmethod
    def from_environment(cls) -> "Folders":
        from nnunet_attention.nnunet_api import nnunet_folder

        return cls(*(nnunet_folder(name) for name in ("nnUNet_preprocessed", "nnUNet_results", "nnUNet_raw")))

    @classmethod
    def of(cls, env: dict) -> "Folders":
        """The folders an environment (a dict of nnU-Net's variables) names."""
        return cls(env["nnUNet_preprocessed"], env["nnUNet_results"], env.get("nnUNet_raw"))


def check_names(spec: StudySpec, folders: Folders):
    """Every trainer found by nnU-Net, and before planning every configuration one nnU-Net's planner makes: one line
    before anything runs or is submitted (the datasets are resolved by the caller, the plans by plan_step)."""
    from nnunet_attention.nnunet_api import find_trainer_class

    for trainer in spec.trainers:
        find_trainer_class(trainer)
    for dataset in spec.datasets:
        if _plans(folders, dataset, spec.plans) is None:
            unknown = [c for c in spec.configurations if c not in DEFAULT_CONFIGURATIONS]
            if unknown:
                made = ", ".join(DEFAULT_CONFIGURATIONS)
                raise NnUNetAttentionError(f"-c {unknown[0]}: nnU-Net's planner makes {made}, and {dataset} has no "
                                           f"{spec.plans}.json yet with others")


def check_folds(spec: StudySpec, dataset: str, folders: Folders):
    """Folds beyond splits_final.json (nnU-Net's 5 before it is written) are refused: nnU-Net would train them on a
    random 80:20 split, not a fold of the study."""
    path = os.path.join(folders.preprocessed, dataset, "splits_final.json")
    count = NNUNET_FOLDS
    if os.path.isfile(path):
        with open(path) as f:
            count = len(json.load(f))
    beyond = [f for f in spec.folds if f != "all" and not 0 <= int(f) < count]
    if beyond:
        where = f"{dataset}'s splits_final.json" if os.path.isfile(path) else f"nnU-Net's splits of {dataset}"
        repeats = max(int(f) for f in beyond) // NNUNET_FOLDS + 1
        raise NnUNetAttentionError(f"fold {beyond[0]} is not in {where} (folds 0-{count - 1}; nnU-Net would train it "
                                   f"on a random 80:20 split); make more folds with: nnunet-attention splits -d "
                                   f"{dataset_id(dataset)} --repeats {max(repeats, 2)}")


def check_nothing_replaced(spec: StudySpec, steps: Sequence[Step]):
    """A paired study never retrains a fold trained unpaired or under another seed unless --retrain-other-seeds
    says so: a one-line error naming the folds, before anything runs."""
    replacing = [s for s in steps if s.replaces]
    if replacing and not spec.retrain_other_seeds:
        raise NnUNetAttentionError(
            f"{len(replacing)} fold(s) would be retrained under --seed {spec.seed}, replacing what is there "
            f"({replacing[0].key}: {replacing[0].replaces}); pass --retrain-other-seeds to replace them, or run "
            f"with the --seed they were trained with")


def dataset_id(name: str) -> str:
    from nnunetv2.utilities.dataset_name_id_conversion import convert_dataset_name_to_id

    return str(convert_dataset_name_to_id(name))


def _plans(folders: Folders, dataset: str, plans: str) -> Optional[dict]:
    plans_file = os.path.join(folders.preprocessed, dataset, f"{plans}.json")
    if not os.path.isfile(plans_file):
        return None
    with open(plans_file) as f:
        return json.load(f)


def preprocessed(folders: Folders, dataset: str, plans: str, configurations: Sequence[str]) -> bool:
    """Whether the plans exist and every configuration's preprocessed data folder is non-empty."""
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    content = _plans(folders, dataset, plans)
    if content is None:
        return False
    for configuration in configurations:
        if configuration not in content["configurations"]:
            raise NnUNetAttentionError(f"configuration {configuration} is not in {dataset}'s {plans}.json (it has "
                                       f"{', '.join(content['configurations'])})")
        data = os.path.join(folders.preprocessed, dataset,
                            PlansManager(content).get_configuration(configuration).data_identifier)
        if not (os.path.isdir(data) and os.listdir(data)):
            return False
    return True


def plan_step(spec: StudySpec, dataset: str, folders: Folders) -> Step:
    def planned():
        return DONE if preprocessed(folders, dataset, spec.plans, spec.configurations) else NEW

    if planned() == NEW and spec.plans != "nnUNetPlans":
        raise NnUNetAttentionError(f"{dataset} has no {spec.plans} plans and data yet; plan and preprocess it "
                                   f"yourself with the matching planner (-pl), then run again")
    to_preprocess = sorted({"3d_fullres" if c == CASCADE else c for c in spec.configurations})
    # fingerprinting takes its own process count (-npfp, nnU-Net's default 8): spawned processes beyond the cores
    # only cost their start-up
    fingerprint = ("-npfp", str(spec.processes)) if spec.processes else ()
    return Step("plan", dataset, ("nnUNetv2_plan_and_preprocess", "-d", dataset_id(dataset), "-c", *to_preprocess,
                                  *_processes(spec), *fingerprint, "--verify_dataset_integrity"), state=planned(),
                check=planned)


def converted_name(msd_folder: str) -> str:
    """The dataset nnUNetv2_convert_MSD_dataset makes of TaskNN_Name: DatasetNNN_Name."""
    task, name = os.path.basename(os.path.normpath(msd_folder)).split("_", 1)
    return f"Dataset{int(task[len('Task'):]):03d}_{name}"


def check_generated_task(msd_folder: str, synth: dict) -> None:
    """A generated task already written must be the one asked for (its dataset.json's synth record): else its
    trainings would be taken for another dataset's."""
    from nnunet_attention.study.synth import synth_record

    dataset_json = os.path.join(msd_folder, "dataset.json")
    if not os.path.isfile(dataset_json):
        return
    with open(dataset_json) as f:
        stored = json.load(f).get("synth")
    wanted = synth_record(synth["cases"], synth["test_cases"], synth.get("seed", 0), synth["shape"])
    if stored != wanted:
        drawn = stored or "settings it does not record (an earlier version)"
        raise NnUNetAttentionError(f"{msd_folder} holds a generated task drawn with {drawn}, not {wanted}: its "
                                   f"trainings would not be this study's; use a new work folder or delete that one")


def prepare_steps(msd_folder: str, spec: StudySpec, folders: Folders, synth: Optional[dict] = None) -> List[Step]:
    """A task from the MSD layout to nnU-Net's preprocessed data: with synth (write_msd_task's cases, test_cases,
    seed, shape) first nnunet-attention synth writes msd_folder; then nnUNetv2_convert_MSD_dataset into
    folders.raw, then planning (plan_step for spec's only dataset); each done once its files exist, each waiting for
    the one before. The demo, scripts/gpu_check.py and the tests' fixtures prepare their tasks with these."""
    dataset = spec.datasets[0]
    if folders.raw is None:
        raise NnUNetAttentionError("nnUNet_raw is not set; export it as for nnU-Net (documentation/"
                                   "setting_up_paths.md): the MSD task is converted into it")

    def written():
        return DONE if os.path.isfile(os.path.join(msd_folder, "dataset.json")) else NEW

    def converted():
        return DONE if os.path.isfile(os.path.join(folders.raw, dataset, "dataset.json")) else NEW

    task_id = dataset_id(dataset)
    prepared = []
    if synth is not None:
        check_generated_task(msd_folder, synth)
        prepared.append(Step("synth", dataset, (
            "nnunet-attention", "synth", "-o", os.path.dirname(os.path.abspath(msd_folder)), "--task-id", task_id,
            "--cases", str(synth["cases"]), "--test-cases", str(synth["test_cases"]), "--seed",
            str(synth.get("seed", 0)), "--shape", *map(str, synth["shape"]), "--overwrite"),
            state=written(), check=written))
    prepared.append(Step("convert", dataset, ("nnUNetv2_convert_MSD_dataset", "-i", os.path.abspath(msd_folder),
                                              "-np", str(spec.processes or 1)),
                         state=converted(), after=tuple(s.key for s in prepared), check=converted))
    plan = plan_step(spec, dataset, folders)
    return [*prepared, replace(plan, after=(prepared[-1].key,))]


def _processes(spec: StudySpec) -> tuple:
    return ("-np", str(spec.processes)) if spec.processes else ()


def _stages(folders: Folders, dataset: str, plans: str, configuration: str):
    """(previous stage, next stage) of a configuration, from the plans (nnU-Net's names before planning)."""
    content = _plans(folders, dataset, plans)
    if content is None or configuration not in content["configurations"]:
        return ("3d_lowres" if configuration == CASCADE else None,
                CASCADE if configuration == "3d_lowres" else None)
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    manager = PlansManager(content).get_configuration(configuration)
    next_stages = manager.next_stage_names or []
    return manager.previous_stage_name, (next_stages[0] if next_stages else None)


def train_key(dataset: str, configuration: str, fold, trainer: str) -> str:
    return Step("train", dataset, (), configuration, str(fold), trainer).key


def train_steps(spec: StudySpec, dataset: str, folders: Folders) -> List[Step]:
    """One nnUNetv2_train per configuration x fold x trainer, in that order, from each fold's state (progress_files).
    A cascade fold waits for the same trainer's fold of the previous stage, which is done only once it has
    written its next-stage predictions."""
    check_folds(spec, dataset, folders)
    steps = []
    for configuration in spec.configurations:
        previous, next_stage = _stages(folders, dataset, spec.plans, configuration)
        if previous is not None and previous not in spec.configurations:
            raise NnUNetAttentionError(f"{configuration} trains on {previous}'s predictions: add {previous} to -c "
                                       f"(e.g. -c {previous} {configuration})")
        for fold in spec.folds:
            for trainer in spec.trainers:
                folder = os.path.join(folders.results, dataset,
                                      model_identifier(trainer, spec.plans, configuration), f"fold_{fold}")

                def state_now(folder=folder, next_stage=next_stage):  # find_best ensembles the .npz files: a fold
                    return training_state(folder, need_npz=spec.npz, next_stage=next_stage,  # without: --val
                                          seed=spec.seed)

                state = state_now()
                replaces = replaced_training(folder, spec.npz, next_stage, spec.seed)
                if state in (RESUME, VALIDATE):  # nnU-Net will unpickle the fold's checkpoint: nothing runs from it
                    from nnunet_attention.model.checkpoint import check_before_nnunet_loads

                    check_before_nnunet_loads(folder, state == RESUME, state == VALIDATE,
                                              trust=spec.trust_checkpoints)
                after = (train_key(dataset, previous, fold, trainer),) if previous else ()
                steps.append(Step("train", dataset, tuple(train_command(
                    dataset_id(dataset), configuration, fold, trainer, state, spec.plans, spec.device, spec.npz,
                    spec.seed, spec.trust_checkpoints)),
                    configuration, str(fold), trainer, state, after, replaces, check=state_now))
    return steps


def find_best_step(spec: StudySpec, dataset: str, folders: Folders, trainings: Sequence[Step]) -> Step:
    def best_found():
        return DONE if found_best_for(os.path.join(folders.results, dataset), spec.trainers, spec.folds,
                                      spec.configurations, spec.plans) else NEW

    return Step("find_best", dataset, ("nnUNetv2_find_best_configuration", dataset_id(dataset), "-c",
                                       *spec.configurations, "-tr", *spec.trainers, "-p", spec.plans,
                                       "-f", *map(str, spec.folds), *_processes(spec)),
                state=best_found(), after=tuple(s.key for s in trainings), check=best_found)


def study_steps(spec: StudySpec, folders: Optional[Folders] = None) -> List[Step]:
    """Every step of the study in order (plan, trainings, find_best per dataset), each with its state read from
    nnU-Net's files now."""
    folders = folders or Folders.from_environment()
    steps = []
    for dataset in spec.datasets:
        plan = plan_step(spec, dataset, folders)
        trainings = [replace(s, after=(plan.key, *s.after)) for s in train_steps(spec, dataset, folders)]
        steps += [plan, *trainings, find_best_step(spec, dataset, folders, trainings)]
    return steps


def best_prediction_steps(dataset: str, folders: Folders, images: str, output: str, device: str,
                          folds: Sequence) -> List[Step]:
    """nnU-Net's inference instructions for the model or ensemble find_best chose (inference_information.json), as
    steps, each waiting for the one before: nnUNetv2_predict of images per member (the given folds; probabilities
    kept for an ensemble; no mirroring on the CPU, where it costs 4x the time), nnUNetv2_ensemble of the members,
    nnUNetv2_apply_postprocessing into output/postprocessed. All are done once output/done.json (mark_predicted) is
    newer than inference_information.json; before find_best has run there are none."""
    information = os.path.join(folders.results, dataset, "inference_information.json")
    if not os.path.isfile(information):
        return []

    def predicted():
        return DONE if newer_than(os.path.join(output, PREDICTED), [information]) else NEW

    with open(information) as f:
        best = json.load(f)["best_model_or_ensemble"]
    commands = _prediction_commands(best, dataset_id(dataset), images, output, device, [str(f) for f in folds])
    state, steps = predicted(), []
    for kind, model, command in commands:  # keys: predict/D/configuration/trainer, ensemble/D, postprocess/D
        steps.append(Step(kind, dataset, tuple(command), model.get("configuration", ""),
                          trainer=model.get("trainer", ""), state=state, after=(steps[-1].key,) if steps else (),
                          check=predicted))
    return steps


# on the CPU: no mirroring (8x fewer forward passes), and one preprocessing and one export process beside the network
# (nnU-Net's 3 + 3 spawned processes would take the cores the network's forward passes need)
CPU_PREDICTION = ("--disable_tta", "-npp", "1", "-nps", "1")


def _prediction_commands(best: dict, dataset_number: str, images: str, output: str, device: str,
                         folds: List[str]) -> List[Tuple[str, dict, List[str]]]:
    models = best["selected_model_or_models"]
    ensemble = len(models) > 1
    commands, members = [], []
    for i, model in enumerate(models):
        member_output = os.path.join(output, "members", f"model_{i + 1}") if ensemble else os.path.join(output, "raw")
        members.append(member_output)
        commands.append(("predict", model, [
            "nnUNetv2_predict", "-i", images, "-o", member_output, "-d", dataset_number, "-c", model["configuration"],
            "-tr", model["trainer"], "-p", model["plans_identifier"], "-f", *folds, "-device", device,
            *(["--save_probabilities"] if ensemble else []), *(CPU_PREDICTION if device == "cpu" else [])]))
    raw_output = os.path.join(output, "ensemble") if ensemble else members[0]
    if ensemble:
        commands.append(("ensemble", {}, ["nnUNetv2_ensemble", "-i", *members, "-o", raw_output, "-np", "2"]))
    commands.append(("postprocess", {}, [
        "nnUNetv2_apply_postprocessing", "-i", raw_output, "-o", os.path.join(output, "postprocessed"), "-pp_pkl_file",
        best["postprocessing_file"], "-np", "2", "-plans_json", best["some_plans_file"]]))
    return commands


def mark_predicted(dataset: str, folders: Folders, output: str):
    """Records that best_prediction_steps ran to the end: output/done.json with the models and the final folder."""
    with open(os.path.join(folders.results, dataset, "inference_information.json")) as f:
        models = json.load(f)["best_model_or_ensemble"]["selected_model_or_models"]
    write_text(os.path.join(output, PREDICTED), json.dumps(
        {"models": models, "final_predictions": os.path.join(output, "postprocessed")}, indent=2))
