"""Repeated cross-validation in nnU-Net's own folds: `nnunet-attention splits` extends splits_final.json additively
(nnU-Net's five entries byte for byte), each repeat a partition of the same cases, and compare reads the repeats."""
import json
import os
import subprocess
import sys

from batchgenerators.utilities.file_and_folder_operations import save_json
from nnunetv2.utilities.crossval_split import generate_crossval_split

from nnunet_attention.compare.read import cross_validation_design


def _dataset(tmp_path, cases=12):
    folder = tmp_path / "nnUNet_preprocessed" / "Dataset991_Splits"
    folder.mkdir(parents=True)
    save_json(generate_crossval_split([f"case_{i:03d}" for i in range(cases)], seed=12345, n_splits=5),
              str(folder / "splits_final.json"))  # exactly as nnUNetTrainer.do_split writes it
    return folder


def _splits(tmp_path, *args):
    env = {**os.environ, "nnUNet_preprocessed": str(tmp_path / "nnUNet_preprocessed"),
           "nnUNet_raw": str(tmp_path), "nnUNet_results": str(tmp_path)}
    return subprocess.run([sys.executable, "-m", "nnunet_attention.cli", "splits", *args], env=env,
                          capture_output=True, text=True)


def test_repeats_extend_nnunets_splits_additively_and_compare_reads_them(tmp_path):
    folder = _dataset(tmp_path)
    original = (folder / "splits_final.json").read_text()
    done = _splits(tmp_path, "-d", "991", "--repeats", "3")
    assert done.returncode == 0, done.stderr
    assert "added folds 5-14" in done.stdout
    text = (folder / "splits_final.json").read_text()
    splits = json.loads(text)
    assert splits[:5] == json.loads(original) and len(splits) == 15
    assert (folder / "splits_final.before_repeats.json").read_text() == original
    cases = sorted(c for s in splits[:5] for c in s["val"])
    for repeat in range(3):
        block = splits[5 * repeat:5 * repeat + 5]
        assert sorted(c for s in block for c in s["val"]) == cases  # every repeat a partition of the same cases
        assert all(sorted(s["train"] + s["val"]) == cases for s in block)
    assert splits[5]["val"] != splits[0]["val"] or splits[6]["val"] != splits[1]["val"]  # a new partition
    design = cross_validation_design(splits)
    assert [design[str(f)]["repeat"] for f in range(15)] == [0] * 5 + [1] * 5 + [2] * 5
    again = _splits(tmp_path, "-d", "991", "--repeats", "3")
    assert "nothing added" in again.stdout and (folder / "splits_final.json").read_text() == text


def test_bad_repeats_and_missing_splits_are_one_line_errors(tmp_path):
    _dataset(tmp_path)
    bad = _splits(tmp_path, "-d", "991", "--repeats", "0")
    assert bad.returncode != 0 and "--repeats must be at least 1" in bad.stderr
    (tmp_path / "nnUNet_preprocessed" / "Dataset992_Empty").mkdir()
    missing = _splits(tmp_path, "-d", "992", "--repeats", "2")
    assert missing.returncode != 0 and "nnU-Net writes it when it first trains a fold" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1


def test_a_fold_the_splits_do_not_define_is_named():
    from nnunet_attention.compare.assemble import outside_splits
    from nnunet_attention.compare.read import TrainerResults

    splits = generate_crossval_split([f"case_{i:03d}" for i in range(10)], seed=12345, n_splits=5)
    found = [TrainerResults(t, "3d_fullres", "x", folds=[0, 1, 7]) for t in ("A", "B")]
    (warning,) = outside_splits("Dataset991_Splits", "3d_fullres", found, cross_validation_design(splits))
    assert "fold(s) 7 not in splits_final.json" in warning and "random 80:20 split" in warning
    assert outside_splits("D", "3d_fullres", found[:1], {}) == []  # no splits file read: nothing to say
