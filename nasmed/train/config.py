"""``TrainConfig``: every training setting, with its default, in one place.

The API (:func:`nasmed.training.train`, :func:`nasmed.transfer.transfer`) takes one; the CLI
only builds it from its options. The nnU-Net recipe is on by default: augmentation
(:class:`~nasmed.train.augment.AugmentConfig`), deep supervision where the network has it,
SGD (Nesterov, momentum 0.99, weight decay 3e-5, poly decay 0.9) at 1e-2, gradient clip 12,
nnU-Net's foreground oversampling (:func:`foreground_fraction`), largest-connected-component
postprocessing when it helps on the validation cases.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any, ClassVar, Literal

from nasmed.engine.defaults import AMP_DTYPES, DEFAULT_WEIGHT_DECAY, weight_decay
from nasmed.errors import ConfigError
from nasmed.train.augment_config import AugmentConfig

__all__ = [
    "DEFAULT_LR",
    "DEFAULT_WEIGHT_DECAY",
    "TrainConfig",
    "foreground_fraction",
    "nnunet_batch_dice",
]

DEFAULT_LR = {"sgd": 1e-2, "adamw": 3e-4}
NNUNET_OVERSAMPLE = 0.33  # nnUNetTrainer.oversample_foreground_percent


def nnunet_batch_dice(patch: tuple[int, ...], median_shape: tuple[int, ...]) -> bool:
    """nnU-Net v2's ``batch_dice`` for its 3d_fullres configuration: on when the patch holds
    under a quarter of the median image (``lowres_creation_threshold``, where nnU-Net plans a
    3d_lowres configuration), off otherwise (per-patch Dice, the usual case for small images).

    nnU-Net also turns it off when the 3d_lowres it then plans is under half the fullres size;
    that refinement is not copied.
    """
    return math.prod(patch) < 0.25 * math.prod(median_shape)


def foreground_fraction(batch_size: int, oversample: float = NNUNET_OVERSAMPLE) -> float:
    """The share of patches centred on foreground that nnU-Net v2 draws in a batch.

    nnU-Net forces sample ``i`` of a batch to foreground unless
    ``i < round(batch_size * (1 - oversample))`` (``nnUNetDataLoader.get_do_oversample``), so
    its 33 % is 1 of 2 (50 %) at its default batch of 2, 1 of 3 at 3, 0 of 1 at 1.
    """
    return (batch_size - round(batch_size * (1 - oversample))) / batch_size


def check_time_budget(seconds: float | None) -> None:
    """Raise :class:`ConfigError` unless ``seconds`` is ``None`` or a finite number > 0."""
    if seconds is not None and not (
        isinstance(seconds, (int, float)) and math.isfinite(seconds) and seconds > 0
    ):
        raise ConfigError(f"--time-budget must be a finite number of seconds > 0, got {seconds}")


@dataclass(frozen=True)
class TrainConfig:
    """Training settings (validated on construction; a bad value is a :class:`ConfigError`).

    Attributes:
        epochs: epochs to train (at most, with ``time_budget``).
        patch: the training patch (``None``: the plan's, fitted to the network).
        fold: which fold of the task's splits to train (its validation part scores), or
            ``"all"``: every case (nnU-Net's convention; validation then scores training cases).
        folds: number of folds (at most the number of training cases).
        width: channel multiplier of the network.
        deep_supervision: ``None`` (default): on where the network supports it (dynunet,
            genotypes), off for unet.
        steps_per_epoch: batches per epoch.
        batch_size: patches per batch.
        optimizer: ``"sgd"`` (Nesterov, nnU-Net) or ``"adamw"``.
        lr: initial learning rate (default 1e-2 for SGD, 3e-4 for AdamW).
        weight_decay: default 3e-5 (SGD) or 1e-2 (AdamW).
        momentum: SGD momentum.
        poly_exponent: exponent of the poly decay (0: constant rate).
        val_every: validate every this many epochs (and after the last one).
        grad_clip: gradient norm clip (nnU-Net: 12); 0 disables.
        amp: mixed precision; ``None`` means on CUDA only.
        amp_dtype: ``auto`` (float16 with a grad scaler on CUDA, bfloat16 on CPU), ``bf16`` or
            ``fp16`` (CUDA only).
        activation_checkpointing: recompute the network's blocks in the backward pass
            (:mod:`nasmed.engine.activation`): less memory, about one more forward pass.
        seed: seeds the initial weights, the patches and their augmentation.
        workers: loader processes (augmentation runs there).
        freeze_epochs: keep the ``frozen`` parameters fixed for the first this many epochs.
        augment: the data augmentation (nnU-Net's by default; ``AugmentConfig.off()``: none).
        time_budget: stop, validated and checkpointed, before this many seconds of training
            (``None``: run every epoch). The poly decay then follows the larger of the epoch
            and time fractions, so the rate reaches its end when time runs out.
        postprocess: decide largest-component postprocessing on the validation cases.
        batch_dice: soft Dice over the whole batch (``True``) or per patch, averaged
            (``False``); ``None``: nnU-Net v2's choice for 3d_fullres (:func:`nnunet_batch_dice`).
    """

    #: settings that may change on resume (recorded anew in ``run.json``)
    MUTABLE: ClassVar[tuple[str, ...]] = ("workers", "time_budget")
    #: settings added after the first release, with the value a run recorded without them had
    ADDED_SETTINGS: ClassVar[dict[str, Any]] = {
        "amp_dtype": "auto",
        "activation_checkpointing": False,
        "batch_dice": None,
    }

    epochs: int = 50
    patch: tuple[int, int, int] | None = None
    fold: int | str = 0
    folds: int = 5
    width: float = 1.0
    deep_supervision: bool | None = None
    steps_per_epoch: int = 250
    batch_size: int = 2
    optimizer: Literal["sgd", "adamw"] = "sgd"
    lr: float | None = None
    weight_decay: float | None = None
    momentum: float = 0.99
    poly_exponent: float = 0.9
    val_every: int = 1
    grad_clip: float = 12.0
    amp: bool | None = None
    amp_dtype: str = "auto"
    activation_checkpointing: bool = False
    seed: int = 0
    workers: int = 2
    freeze_epochs: int = 0
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    time_budget: float | None = None
    postprocess: bool = True
    batch_dice: bool | None = None

    def __post_init__(self) -> None:
        if self.patch is not None:
            patch = tuple(int(p) for p in self.patch)
            if len(patch) != 3 or min(patch) < 1:
                raise ConfigError(f"--patch must be 3 positive sides, got {list(self.patch)}")
            object.__setattr__(self, "patch", patch)
        if isinstance(self.augment, dict):
            object.__setattr__(self, "augment", AugmentConfig.from_json(self.augment))
        if not isinstance(self.augment, AugmentConfig):
            raise ConfigError(
                f"augment must be an AugmentConfig, not {type(self.augment).__name__}"
            )
        check_time_budget(self.time_budget)
        checks = [
            (self.epochs >= 1, f"--epochs must be >= 1, got {self.epochs}"),
            (self.folds >= 2, f"--folds must be >= 2, got {self.folds}"),
            (
                self.fold == "all" or (isinstance(self.fold, int) and self.fold >= 0),
                f"--fold must be >= 0 or all, got {self.fold!r}",
            ),
            (self.width > 0, f"--width must be > 0, got {self.width}"),
            (self.steps_per_epoch >= 1, f"--steps must be >= 1, got {self.steps_per_epoch}"),
            (self.batch_size >= 1, f"--batch must be >= 1, got {self.batch_size}"),
            (
                self.optimizer in DEFAULT_LR,
                f"--optimizer must be sgd or adamw, not {self.optimizer!r}",
            ),
            (self.lr is None or self.lr > 0, f"--lr must be > 0, got {self.lr}"),
            (
                self.weight_decay is None or self.weight_decay >= 0,
                f"--weight-decay must be >= 0, got {self.weight_decay}",
            ),
            (0 <= self.momentum < 1, f"--momentum must be in [0, 1), got {self.momentum}"),
            (self.poly_exponent >= 0, f"--poly-exponent must be >= 0, got {self.poly_exponent}"),
            (self.grad_clip >= 0, f"--grad-clip must be >= 0, got {self.grad_clip}"),
            (self.val_every >= 1, f"--val-every must be >= 1, got {self.val_every}"),
            (self.seed >= 0, f"--seed must be >= 0, got {self.seed}"),
            (self.workers >= 0, f"--workers must be >= 0, got {self.workers}"),
            (self.freeze_epochs >= 0, f"freeze epochs must be >= 0, got {self.freeze_epochs}"),
            (
                self.amp_dtype in AMP_DTYPES,
                f"--amp-dtype must be one of {', '.join(AMP_DTYPES)}, not {self.amp_dtype!r}",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)

    @property
    def learning_rate(self) -> float:
        """The initial learning rate (given or the optimizer's default)."""
        return self.lr if self.lr is not None else DEFAULT_LR[self.optimizer]

    @property
    def decay(self) -> float:
        """The weight decay (given or the optimizer's default)."""
        return weight_decay(self.optimizer, self.weight_decay)

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with ``changes`` (validated again)."""
        return replace(self, **changes)

    def to_json(self) -> dict[str, Any]:
        """Plain-JSON form (recorded in ``run.json``)."""
        data = asdict(self)
        data["patch"] = list(self.patch) if self.patch is not None else None
        data["augment"] = self.augment.to_json()
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TrainConfig:
        """Inverse of :meth:`to_json`."""
        return cls(**data)
