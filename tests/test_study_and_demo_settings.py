"""The demo stands on the committed study: the figures it quotes ship with the package and are the study's
(docs/init_study.json), the study sampled exactly the demo's settings (its paired arm with the demo's own seed among
its seeds), and no training there lost a class."""
import json
from pathlib import Path

from nnunet_attention.compare.analysis import LOST_DICE
from nnunet_attention.compare.metrics import DEFAULT_MARGINS
from nnunet_attention.study import demo
from nnunet_attention.model.trainers import nnUNetTrainerAttention, nnUNetTrainerDemo

STUDY = json.loads((Path(__file__).parents[1] / "docs" / "init_study.json").read_text())


def test_the_shipped_figures_are_the_studys():
    assert demo.load_study() == STUDY["summary"]


def test_the_study_sampled_the_demos_settings_and_no_training_lost_a_class():
    settings = STUDY["summary"]["settings"]
    assert STUDY["studied_demo_settings"]
    assert settings == {"configuration": demo.DEMO_CONFIGURATION, "folds": list(demo.DEMO_FOLDS),
                        "trainers": list(demo.DEMO_TRAINERS), "synth_cases": demo.SYNTH_CASES,
                        "synth_shape": list(demo.SYNTH_SHAPE), "schedule": demo.demo_schedule(),
                        "paired_seeds": settings["paired_seeds"], "demo_seed": demo.DEMO_SEED}
    assert demo.DEMO_SEED in settings["paired_seeds"]
    for arm in ("paired", "unpaired"):
        assert STUDY["summary"]["arms"][arm]["difference"]["n"] >= 6
    for trainer in demo.DEMO_TRAINERS:
        runs = [r for r in STUDY["runs"] if r["trainer"] == trainer]
        assert len(runs) >= 12 and {r["fold"] for r in runs} == set(demo.DEMO_FOLDS)
        assert all(min(r["validation_dice"].values()) > LOST_DICE for r in runs)  # no training lost a class
        assert all(len(r["pseudo_dice_per_epoch"]) == nnUNetTrainerDemo.schedule[0] >= 5 for r in runs)


def test_the_study_names_the_default_start():
    assert STUDY["default"] == nnUNetTrainerAttention.gates.init


def test_the_demo_note_quotes_the_study_only_at_its_settings():
    trainers, folds = list(demo.DEMO_TRAINERS), demo.DEMO_FOLDS
    note = demo.demo_note(True, demo.DEMO_CONFIGURATION, trainers, folds)
    assert "The study at exactly these settings" in note
    assert f"{STUDY['summary']['arms']['paired']['trainers'][0]['mean']:.3f}" in note
    unpaired = demo.demo_note(True, demo.DEMO_CONFIGURATION, trainers, folds, seed=None)
    assert "unpaired trainings as this demo ran them" in unpaired
    assert f"{STUDY['summary']['arms']['unpaired']['trainers'][0]['mean']:.3f}" in unpaired
    assert "not part of the study" in demo.demo_note(True, "3d_fullres", trainers, folds)
    assert "not part of the study" in demo.demo_note(True, demo.DEMO_CONFIGURATION, trainers, (0,))
    assert "not part of the study" in demo.demo_note(False, demo.DEMO_CONFIGURATION, trainers, folds)


def test_the_demos_margins_apply_only_at_its_studied_settings():
    assert demo.DEMO_MARGINS["dice"] > 0.01  # wider than compare's default: stated in docs/demo.md
    assert demo.demo_note(True, demo.DEMO_CONFIGURATION, list(demo.DEMO_TRAINERS), demo.DEMO_FOLDS).startswith(
        demo.STUDIED)


def test_no_margin_on_the_command_line_leaves_each_command_its_default():
    from nnunet_attention import cli

    parser = cli.build_parser()
    assert cli._margins(parser.parse_args(["demo"])) is None  # the demo then takes DEMO_MARGINS
    given = cli._margins(parser.parse_args(["demo", "--margin", "dice=0.02", "hd95=3"]))
    assert dict(given) == {**DEFAULT_MARGINS, "dice": 0.02, "hd95": 3}
