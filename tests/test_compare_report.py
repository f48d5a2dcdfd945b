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


def test_the_printed_summary_is_read_at_a_glance(tmp_path, monkeypatch, capsys):
    """One dataset x configuration: a header, one row per metric with outcome, margin, estimate and CI, the warnings,
    what it answers and where the report is; at most 12 lines of at most 120 characters, and report.md opens with
    the same table."""
    for name, value in write_results(tmp_path).items():
        monkeypatch.setenv(name, value)
    compare_datasets([DATASET], ["3d_fullres"], list(TRAINERS), "nnUNetPlans", list(FOLDS), str(tmp_path / "report"),
                     processes=1)
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) <= 12 and max(map(len, lines)) <= 120, lines
    assert lines[0].startswith(f"verdict {DATASET}") and f"B = {TRAINERS[1]} against A = {TRAINERS[0]}" in lines[0]
    rows = {line.split()[0]: line.split() for line in lines if line.split()[0] in ("Dice", "NSD", "HD95", "ASSD")}
    assert set(rows) == {"Dice", "NSD", "HD95", "ASSD"}
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    dice = report["verdict"][0]["metrics"]["dice"]
    assert rows["Dice"][1:3] == [dice["verdict"], f"±{dice['margin']:g}"] and rows["Dice"][-2] == "to"
    assert lines[-1].endswith(str(tmp_path / "report" / "report.md"))
    markdown = (tmp_path / "report" / "report.md").read_text().splitlines()
    table = [line for line in markdown[:20] if line.startswith("| Dice |")]
    assert table and table[0].split(" | ")[1:3] == [dice["verdict"], f"±{dice['margin']:g}"]
    assert markdown.index("![forest](forest.png)") < markdown.index("## The verdict in detail")
