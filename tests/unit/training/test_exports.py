"""The training reader's public names, and that importing them does not import torch."""

from __future__ import annotations

import subprocess
import sys

import mlscale.stores.training as training


def test_every_exported_name_exists() -> None:
    assert sorted(training.__all__) == [
        "AsyncTrainingReader", "Batch", "Position", "ReadPlan", "ReadProgress", "Split",
        "TrainingDataset", "TrainingReader",
    ]
    for name in training.__all__:
        assert getattr(training, name).__doc__, name


def test_importing_the_reader_leaves_torch_alone() -> None:
    code = "import sys, mlscale.stores.training; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"
