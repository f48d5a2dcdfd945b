"""pairing.json, the record a paired training leaves in its fold folder (written by pairing.PairedTraining), and what
grid, the demo and compare read from it; no torch here, so that reading a study's state stays light."""
import json
import os
from typing import Optional

PAIRING_FILE = "pairing.json"


def read_pairing(fold_folder: str) -> Optional[dict]:
    """A fold's pairing.json (None: not a paired training)."""
    path = os.path.join(fold_folder, PAIRING_FILE)
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        return json.load(f)


def study_seed_of(fold_folder: str) -> Optional[int]:
    """The study seed a fold was trained with (None: unpaired, nnUNetv2_train as is)."""
    record = read_pairing(fold_folder)
    return None if record is None else record["study_seed"]
