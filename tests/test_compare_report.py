"""report.json is a contract: every key a report written before the metric registry, the margins and the grid
backends had (tests/data/report_keys_0.1.json, written by that code from the same inputs: tests/report_inputs.py)
is in a report written now."""
import json
from pathlib import Path

from report_inputs import DATASET, FOLDS, TRAINERS, key_paths, write_results

from nnunet_attention.compare.pipeline import compare_datasets


def test_a_report_keeps_every_key_of_the_report_before(tmp_path, monkeypatch):
    for name, value in write_results(tmp_path).items():
        monkeypatch.setenv(name, value)
    compare_datasets([DATASET], ["3d_fullres"], list(TRAINERS), "nnUNetPlans", list(FOLDS), str(tmp_path / "report"),
                     processes=1)
    now = key_paths(json.loads((tmp_path / "report" / "report.json").read_text()))
    before = set(json.loads((Path(__file__).parent / "data" / "report_keys_0.1.json").read_text()))
    assert len(before) > 1000
    assert not before - now, sorted(before - now)[:20]
