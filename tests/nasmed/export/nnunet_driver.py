"""Run nnU-Net v2's own command-line entry points with a tiny trainer (used by the tests).

``python nnunet_driver.py train ARGS...`` runs what ``nnUNetv2_train ARGS...`` runs
(``nnunetv2.run.run_training.run_training_entry``), ``... predict ARGS...`` what
``nnUNetv2_predict`` runs. The only change: the trainer name ``nnUNetTrainer_nasmedTiny`` (1 epoch
of 3 iterations, 1 validation iteration) resolves to the class below. nnU-Net's own lookup
imports every trainer module it ships, and its Primus trainers import timm, which nasmed does
not install (timm pulls torchvision and a CUDA torch), so a trainer outside nnU-Net's default
``nnUNetTrainer`` cannot be found by name without it.
"""

from __future__ import annotations

import sys
from typing import Any

import torch
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer


class nnUNetTrainer_nasmedTiny(nnUNetTrainer):  # nnU-Net's naming
    """nnU-Net's trainer, 1 epoch of 3 training and 1 validation iteration."""

    def __init__(
        self,
        plans: dict[str, Any],
        configuration: str,
        fold: int,
        dataset_json: dict[str, Any],
        device: torch.device = torch.device("cuda"),  # noqa: B008 (nnU-Net's signature)
    ) -> None:
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = 1
        self.num_iterations_per_epoch = 3
        self.num_val_iterations_per_epoch = 1


def _patch(module: Any) -> None:
    original = module.recursive_find_trainer_class_by_name

    def find(name: str) -> Any:
        return (
            nnUNetTrainer_nasmedTiny
            if name == nnUNetTrainer_nasmedTiny.__name__
            else original(name)
        )

    module.recursive_find_trainer_class_by_name = find


if __name__ == "__main__":
    verb = sys.argv[1]
    sys.argv = [f"nnUNetv2_{verb}", *sys.argv[2:]]
    if verb == "train":
        import nnunetv2.run.run_training as training

        _patch(training)
        training.run_training_entry()
    elif verb == "predict":
        import nnunetv2.inference.predict_from_raw_data as prediction

        _patch(prediction)
        prediction.predict_entry_point()
    else:
        raise SystemExit(f"unknown verb {verb!r}: train or predict")
