"""The demo stands on the committed calibration: the figures it quotes ship with the package and are the calibration's
(docs/demo_calibration.json, real trainings of fresh datasets through the demo's own steps), the calibration sampled
exactly the demo's settings, and the demo's margins are the ones its rule chose there."""
import json
from pathlib import Path

from real_calibration import MARGIN_CANDIDATES, demo_study

from nnunet_attention.compare.metrics import DEFAULT_MARGINS
from nnunet_attention.study import demo

CALIBRATION = json.loads((Path(__file__).parents[1] / "docs" / "demo_calibration.json").read_text())


def test_the_shipped_figures_are_the_calibrations():
    assert demo.load_study() == demo_study(CALIBRATION, "docs/demo_calibration.md")


def test_the_calibration_sampled_the_demos_settings_and_chose_its_margins_by_its_rule():
    settings = demo.load_study()["settings"]
    assert {k: v for k, v in settings.items() if k != "margins"} == demo.current_settings()
    decided = CALIBRATION["summary"]["decisiveness"]
    assert [r["margin"] for r in decided["by_margin"]] == list(MARGIN_CANDIDATES)
    chosen = next(r for r in decided["by_margin"] if r["resampled_rate"] >= 0.90)
    assert decided["chosen_margin"] == chosen["margin"] == demo.demo_margins()["dice"] == demo.demo_margins()["nsd"]
    assert len(CALIBRATION["studies"]) >= 6
    for study in CALIBRATION["studies"]:
        assert len(study["per_fold_difference"]) == len(demo.DEMO_FOLDS)
        assert study["outcome"] in ("better", "worse", "equivalent", "inconclusive")


def test_the_demo_note_quotes_the_calibration_only_at_its_settings():
    trainers, folds = list(demo.DEMO_TRAINERS), demo.DEMO_FOLDS
    study = demo.load_study()
    note = demo.demo_note(True, demo.DEMO_CONFIGURATION, trainers, folds)
    assert note.startswith(demo.STUDIED) and f"{study['trainers'][0]['mean']:.3f}" in note
    assert f"{study['studies']} fresh datasets" in note
    assert "not part of the calibration" in demo.demo_note(True, demo.DEMO_CONFIGURATION, trainers, folds, seed=None)
    assert "not part of the calibration" in demo.demo_note(True, "3d_fullres", trainers, folds)
    assert "not part of the calibration" in demo.demo_note(True, demo.DEMO_CONFIGURATION, trainers, (0,))
    assert "not part of the calibration" in demo.demo_note(False, demo.DEMO_CONFIGURATION, trainers, folds)


def test_the_demo_is_its_calibrations_study_0_and_says_whether_it_repeated_it():
    import real_calibration

    assert real_calibration.STUDY_SEED0 == demo.SYNTH_SEED and real_calibration.STUDY_ID0 == demo.DEFAULT_TASK_ID
    first = CALIBRATION["studies"][0]
    assert first["dataset_seed"] == demo.SYNTH_SEED
    assert demo.load_study()["first_study"]["per_fold_difference"] == first["per_fold_difference"]
    same = {str(f): v for f, v in zip(demo.DEMO_FOLDS, first["per_fold_difference"])}
    assert demo.reproduction_line(same).startswith("Reproduced")
    other = dict(same, **{"3": same["3"] + 0.002})
    assert demo.reproduction_line(other).startswith("Not the record") and "0.0020" in demo.reproduction_line(other)


def test_no_margin_on_the_command_line_leaves_each_command_its_default():
    from nnunet_attention import cli

    parser = cli.build_parser()
    assert cli._margins(parser.parse_args(["demo"])) is None  # the demo then takes demo_margins()
    given = cli._margins(parser.parse_args(["demo", "--margin", "dice=0.02", "hd95=3"]))
    assert dict(given) == {**DEFAULT_MARGINS, "dice": 0.02, "hd95": 3}


def test_a_record_keeps_what_compare_reads_and_restores_only_what_the_work_folder_lacks(tmp_path):
    from real_calibration import from_record, pack_record, restore_records

    ds = "Dataset100_AttentionSynth"
    fold = Path("study_000/results") / ds / f"{demo.DEMO_TRAINERS[0]}__{demo.PLANS}__2d/fold_0"
    pre = Path("study_000/preprocessed") / ds
    kept = [fold / "validation/summary.json", fold / "validation/synth_002.nii.gz", fold / "pairing.json",
            fold / "training_log.txt", pre / "gt_segmentations/synth_002.nii.gz", pre / "dataset.json",
            pre / "splits_final.json", pre / f"{demo.PLANS}.json"]
    left_out = [fold / "checkpoint_final.pth", fold / "validation/synth_002.npz", fold / "validation/synth_002.pkl",
                fold / "progress.png", Path("study_000/raw") / ds / "imagesTr/synth_002_0000.nii.gz",
                Path("study_000/msd/Task100/imagesTr/synth_002.nii.gz"),
                pre / f"{demo.PLANS}_2d/synth_002.b2nd", pre / f"{demo.PLANS}_2d/synth_002.pkl"]
    work = tmp_path / "work"
    for i, rel in enumerate(kept + left_out):
        (work / rel).parent.mkdir(parents=True, exist_ok=True)
        (work / rel).write_text(f"file {i}")
    records = tmp_path / "records"
    record = pack_record(work, "study_000", records)
    assert [p.name for p in records.iterdir()] == [record.name] and not from_record(work, "study_000")

    fresh = tmp_path / "fresh"
    assert restore_records(fresh, records) == ["study_000"] and from_record(fresh, "study_000")
    for i, rel in enumerate(kept):
        assert (fresh / rel).read_text() == f"file {i}"
    assert not any((fresh / rel).exists() for rel in left_out)
    marker = json.loads((fresh / "study_000" / "record.json").read_text())
    assert marker["record"] == "study_000" and "checkpoints" in marker["left_out"]

    (fresh / kept[0]).write_text("a later training")
    assert restore_records(fresh, records) == [] and (fresh / kept[0]).read_text() == "a later training"
