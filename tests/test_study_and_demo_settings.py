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


def test_no_margin_on_the_command_line_leaves_each_command_its_default():
    from nnunet_attention import cli

    parser = cli.build_parser()
    assert cli._margins(parser.parse_args(["demo"])) is None  # the demo then takes demo_margins()
    given = cli._margins(parser.parse_args(["demo", "--margin", "dice=0.02", "hd95=3"]))
    assert dict(given) == {**DEFAULT_MARGINS, "dice": 0.02, "hd95": 3}
