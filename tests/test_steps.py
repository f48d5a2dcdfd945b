"""The step model (steps.py) and its executors: a cascade fold waits for the same trainer's lowres fold, which is done
only once its next-stage predictions are written; both executors (grid's real submitit jobs, local processes) start
steps in that order and leave a dependent of a failed step waiting; grid shows the dependency in --dry-run and
--status."""
import json
import os
import sys
import time
from pathlib import Path

import pytest
from helpers import ThreadBackend

from nnunet_attention.errors import NnUNetAttentionError
from nnunet_attention.nnunet_api import model_identifier
from nnunet_attention.study import grid, steps
from nnunet_attention.study.backends import BACKENDS
from nnunet_attention.study.executor import LocalExecutor, StepTimeout
from nnunet_attention.study.steps import TRAINED, VALIDATE, training_state
from nnunet_attention.tools.bench import bench_plans
from nnunet_attention.tools.reference_plans import reference_configurations

DATASET = "Dataset990_AttentionSynth"
TRAINERS = ["nnUNetTrainer", "nnUNetTrainerAttention"]


@pytest.fixture
def folders(tmp_path):
    """Plans with a lowres stage and its cascade (as nnU-Net writes them for large images) and their data folders."""
    fullres = reference_configurations()["hippocampus_3d_fullres"]
    plans = bench_plans({**fullres, "data_identifier": "nnUNetPlans_3d_fullres"})
    plans["dataset_name"], plans["plans_name"] = DATASET, "nnUNetPlans"
    plans["configurations"] = {
        "3d_fullres": plans["configurations"]["bench"],
        "3d_lowres": {"inherits_from": "3d_fullres", "data_identifier": "nnUNetPlans_3d_lowres",
                      "next_stage": "3d_cascade_fullres"},
        "3d_cascade_fullres": {"inherits_from": "3d_fullres", "previous_stage": "3d_lowres"}}
    root = tmp_path / "nnUNet_preprocessed" / DATASET
    for identifier in ("nnUNetPlans_3d_fullres", "nnUNetPlans_3d_lowres"):
        (root / identifier).mkdir(parents=True)
        (root / identifier / "case.b2nd").write_text("")
    (root / "nnUNetPlans.json").write_text(json.dumps(plans))
    return steps.Folders(str(tmp_path / "nnUNet_preprocessed"), str(tmp_path / "nnUNet_results"))


def _spec(configurations, folds=(0,)):
    return steps.StudySpec([DATASET], configurations, list(folds), TRAINERS, device="cpu")


def _fold(folders, trainer, configuration, fold, cases=("a", "b")):
    """A finished fold as nnU-Net leaves it: final checkpoint, validation summary and .npz."""
    folder = (Path(folders.results) / DATASET / model_identifier(trainer, "nnUNetPlans", configuration)
              / f"fold_{fold}")
    validation = folder / "validation"
    validation.mkdir(parents=True)
    (folder / "checkpoint_final.pth").write_text("")
    (validation / "summary.json").write_text(json.dumps(
        {"metric_per_case": [{"prediction_file": str(validation / f"{c}.nii.gz")} for c in cases]}))
    for c in cases:
        (validation / f"{c}.npz").write_text("")
    return folder


def test_a_cascade_fold_waits_for_the_same_trainers_lowres_fold(folders):
    built = steps.study_steps(_spec(["3d_lowres", "3d_cascade_fullres"], folds=(0, 1)), folders)
    by_key = {s.key: s for s in built}
    for fold in (0, 1):
        for trainer in TRAINERS:
            cascade = by_key[steps.train_key(DATASET, "3d_cascade_fullres", fold, trainer)]
            assert cascade.after == (f"plan/{DATASET}", steps.train_key(DATASET, "3d_lowres", fold, trainer))
    (find_best,) = [s for s in built if s.kind == "find_best"]
    assert set(find_best.after) == {s.key for s in built if s.kind == "train"}
    assert by_key[f"plan/{DATASET}"].done  # plans and both data folders exist


def test_the_cascade_without_its_lowres_stage_is_a_one_line_error(folders):
    with pytest.raises(NnUNetAttentionError, match="add 3d_lowres to -c"):
        steps.study_steps(_spec(["3d_cascade_fullres"]), folders)


def test_a_paired_study_trains_again_a_fold_trained_unpaired_or_under_another_seed(folders):
    folder = _fold(folders, TRAINERS[0], "3d_fullres", 0)
    assert training_state(str(folder)) == TRAINED  # an unpaired study takes any finished fold
    assert training_state(str(folder), seed=0) == steps.NEW  # trained unpaired: not half of a pair
    (folder / "pairing.json").write_text(json.dumps({"study_seed": 0, "pair_seed": 1, "starts": []}))
    assert training_state(str(folder), seed=0) == TRAINED
    assert training_state(str(folder), seed=1) == steps.NEW
    spec = steps.StudySpec([DATASET], ["3d_fullres"], [0], TRAINERS, device="cpu", seed=1)
    (train,) = [s for s in steps.train_steps(spec, DATASET, folders) if s.trainer == TRAINERS[0]]
    assert not train.done and "--c" not in train.command and train.command[-2:] == ("--seed", "1")


def test_compare_names_folds_whose_trainings_are_not_a_pair(folders):
    from nnunet_attention.compare.read import pairing_of
    from nnunet_attention.compare.read import TrainerResults
    from nnunet_attention.compare.report import Pairing

    found = [TrainerResults(t, "3d_fullres", str(_fold(folders, t, "3d_fullres", f).parent), folds=[0, 1])
             for t in TRAINERS for f in (0, 1)][::2]
    assert pairing_of(found) == Pairing("unpaired", {"0": [None, None], "1": [None, None]}, [])
    for trainer in found:
        for fold, seed in ((0, 3), (1, 3)):
            (Path(trainer.folder) / f"fold_{fold}" / "pairing.json").write_text(json.dumps({"study_seed": seed}))
    assert pairing_of(found).design == "paired (seed 3)"
    (Path(found[1].folder) / "fold_1" / "pairing.json").unlink()
    mixed = pairing_of(found)
    assert mixed.design == "mixed" and len(mixed.warnings) == 1
    assert mixed.warnings[0].startswith("fold 1: nnUNetTrainer trained with --seed 3, nnUNetTrainerAttention "
                                           "unpaired: not a pair")


def test_a_lowres_fold_is_done_only_with_its_next_stage_predictions(folders):
    folder = _fold(folders, TRAINERS[0], "3d_lowres", 0)
    assert training_state(str(folder), need_npz=True) == TRAINED
    assert training_state(str(folder), need_npz=True, next_stage="3d_cascade_fullres") == VALIDATE
    written = folder.parent / "predicted_next_stage" / "3d_cascade_fullres"
    written.mkdir(parents=True)
    (written / "a.b2nd").write_text("")
    assert training_state(str(folder), need_npz=True, next_stage="3d_cascade_fullres") == VALIDATE  # b missing
    (written / "b.b2nd").write_text("")
    assert training_state(str(folder), need_npz=True, next_stage="3d_cascade_fullres") == TRAINED
    (lowres,) = [s for s in steps.train_steps(_spec(["3d_lowres"]), DATASET, folders) if s.trainer == TRAINERS[0]]
    assert lowres.done


def _recording_step(name: str, log, after=(), fail=False):
    """A step whose job appends its name to log (after a pause), then exits non-zero if fail; done = its line."""
    code = (f"import time; time.sleep(1.5); open({str(log)!r}, 'a').write({name!r} + '\\n'); "
            f"raise SystemExit({int(fail)})")
    check = (lambda: TRAINED if log.is_file() and name in log.read_text().split() and not fail else "new")
    return steps.Step("train", DATASET, (sys.executable, "-c", code), "3d_fullres", name, "t", "new", tuple(after),
                      check=check)


def _executor(kind: str, tmp_path, slots: int, log):
    """The two executors of the one interface (executor.StepExecutor): grid's jobs (its local backend, or the tests'
    thread backend), local processes."""
    if kind.startswith("grid"):
        backend = "thread" if kind == "grid-thread" else "local"
        return grid.Grid(_spec(["3d_fullres"]), grid.ExecutorOptions(backend, max_parallel=slots), log=log,
                         poll_seconds=0.2)
    executor = LocalExecutor(dict(os.environ), str(tmp_path / "logs"), slots)
    executor.report = log
    return executor


@pytest.mark.parametrize("kind", ["grid", "grid-thread", "local"])
def test_a_step_starts_only_after_what_it_waits_for(kind, tmp_path, monkeypatch):
    monkeypatch.setitem(BACKENDS, "thread", ThreadBackend)
    monkeypatch.setenv("nnUNet_results", str(tmp_path / "results"))
    log = tmp_path / "order.txt"
    first = _recording_step("lowres", log)
    second = _recording_step("cascade", log, after=[first.key])
    other = _recording_step("other", log)
    runner = _executor(kind, tmp_path, 3, lambda line: None)
    assert runner.run_steps([second, first, other]) == []  # the dependent listed first, three slots free
    order = log.read_text().split()
    assert order.index("cascade") > order.index("lowres") and sorted(order) == ["cascade", "lowres", "other"]


@pytest.mark.parametrize("kind", ["grid", "grid-thread", "local"])
def test_a_step_waiting_for_a_failed_one_is_not_started(kind, tmp_path, monkeypatch):
    monkeypatch.setitem(BACKENDS, "thread", ThreadBackend)
    monkeypatch.setenv("nnUNet_results", str(tmp_path / "results"))
    log = tmp_path / "order.txt"
    broken = _recording_step("lowres", log, fail=True)
    waiting = _recording_step("cascade", log, after=[broken.key])
    lines = []
    runner = _executor(kind, tmp_path, 2, lines.append)
    failed = runner.run_steps([waiting, broken])
    assert [s.key for s in failed] == [broken.key, waiting.key]
    assert "cascade" not in log.read_text().split()
    assert any(line.startswith(f"BLOCKED {waiting.key}") for line in lines)
    if kind.startswith("grid"):
        assert waiting.key not in runner.state["jobs"]


def test_a_local_executor_stops_what_runs_when_its_deadline_passes(tmp_path):
    sleeper = steps.Step("train", DATASET, (sys.executable, "-c", "import time; time.sleep(60)"), "3d_fullres", "0",
                         "t")
    executor = LocalExecutor(dict(os.environ), str(tmp_path / "logs"), deadline=time.time() + 1)
    started = time.time()
    with pytest.raises(StepTimeout):
        executor.run_steps([sleeper])
    assert time.time() - started < 30 and executor._running == {}


def test_dry_run_and_status_show_the_dependency(folders, monkeypatch):
    monkeypatch.setenv("nnUNet_preprocessed", folders.preprocessed)
    monkeypatch.setenv("nnUNet_results", folders.results)
    spec = _spec(["3d_lowres", "3d_cascade_fullres"])
    lowres_key = steps.train_key(DATASET, "3d_lowres", 0, TRAINERS[1])
    dry = grid.dry_run(spec)
    assert f"      after {lowres_key}" in dry
    status = grid.status_table(spec, grid.ExecutorOptions("local"))
    row = next(line for line in status.splitlines() if "3d_cascade_fullres" in line and TRAINERS[1] in line)
    assert f"waits for {lowres_key}" in row


def _inference_information(folders, models):
    """nnUNetv2_find_best_configuration's answer naming models (trainer, configuration) as the best."""
    results = Path(folders.results) / DATASET
    results.mkdir(parents=True, exist_ok=True)
    chosen = [{"configuration": c, "trainer": t, "plans_identifier": "nnUNetPlans"} for t, c in models]
    (results / "inference_information.json").write_text(json.dumps({"best_model_or_ensemble": {
        "selected_model_or_models": chosen, "postprocessing_file": "pp.pkl", "some_plans_file": "plans.json"}}))


@pytest.mark.parametrize("models, kinds", [([(TRAINERS[1], "3d_fullres")], ["predict", "postprocess"]),
                                           ([(t, "3d_fullres") for t in TRAINERS],
                                            ["predict", "predict", "ensemble", "postprocess"])])
def test_prediction_with_find_bests_choice_is_a_chain_of_steps(folders, tmp_path, models, kinds):
    output = tmp_path / "predictions"
    assert steps.best_prediction_steps(DATASET, folders, "imagesTs", str(output), "cpu", [0, 1]) == []  # no find_best
    _inference_information(folders, models)
    built = steps.best_prediction_steps(DATASET, folders, "imagesTs", str(output), "cpu", [0, 1])
    assert [s.kind for s in built] == kinds and len({s.key for s in built}) == len(built)
    assert all(s.after == (before.key,) for before, s in zip(built, built[1:])) and built[0].after == ()
    predict = built[0].command
    folds_at = predict.index("-f")
    assert predict[:3] == ("nnUNetv2_predict", "-i", "imagesTs") and predict[folds_at + 1:folds_at + 3] == ("0", "1")
    assert "--disable_tta" in predict and ("--save_probabilities" in predict) == (len(models) > 1)
    assert predict[predict.index("-npp") + 1] == predict[predict.index("-nps") + 1] == "1"  # on the CPU
    assert built[-1].command[0] == "nnUNetv2_apply_postprocessing" and not any(s.done for s in built)
    (output / "postprocessed").mkdir(parents=True)  # what the commands leave
    steps.mark_predicted(DATASET, folders, str(output))
    assert all(s.refreshed().done for s in built)
    assert json.loads((output / "done.json").read_text())["models"][0]["trainer"] == models[0][0]
