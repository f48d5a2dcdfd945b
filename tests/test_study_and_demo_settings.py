"""The demo's settings stand on the committed study: the spread its report quotes is what docs/init_study.json
measured at exactly those settings, where no run of either trainer lost a class; the default gate start is named."""
import json
from pathlib import Path

import numpy as np

from nnunet_attention import demo
from nnunet_attention.trainers import nnUNetTrainerAttention

STUDY = json.loads((Path(__file__).parents[1] / "docs" / "init_study.json").read_text())
VARIANT = {"ungated": "ungated", "gated": STUDY["default"]}


def _runs(variant):
    settings = demo.STUDY_AT_DEMO_SETTINGS
    return sorted((r for r in STUDY["runs"] if r["variant"] == variant and r["iterations"] == settings["iterations"]
                   and r["configuration"] == settings["configuration"]), key=lambda r: r["run"])


def test_quoted_spread_is_the_studys_and_no_run_lost_a_class_there():
    for name, variant in VARIANT.items():
        runs = _runs(variant)
        assert len(runs) >= 3
        np.testing.assert_allclose(demo.STUDY_AT_DEMO_SETTINGS[name], [r["validation_mean_dice"] for r in runs],
                                   atol=5e-4)
        assert all(min(r["validation_dice"].values()) >= STUDY["lost_class_below"] for r in runs)
    assert demo.DEMO_CONFIGURATION == demo.STUDY_AT_DEMO_SETTINGS["configuration"]
    assert demo.DEMO_CPU_EPOCHS * 250 == demo.STUDY_AT_DEMO_SETTINGS["iterations"]


def test_the_study_names_the_default_start():
    assert STUDY["default"] == nnUNetTrainerAttention.gate_init


def test_the_demo_note_quotes_the_spread_only_at_the_studied_settings():
    trainers = demo.matched_trainers(demo.DEMO_CPU_EPOCHS)
    note = demo.demo_note(True, demo.DEMO_CONFIGURATION, trainers)
    assert "Run-to-run spread" in note and f"{demo.STUDY_AT_DEMO_SETTINGS['ungated'][0]:.3f}" in note
    assert "not part of the study" in demo.demo_note(True, "3d_fullres", trainers)
    assert "not part of the study" in demo.demo_note(False, demo.DEMO_CONFIGURATION, trainers)
