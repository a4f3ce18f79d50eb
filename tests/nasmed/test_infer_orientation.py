"""``predict`` gives the same segmentation whatever the voxel order an image is stored in.

A fixed-weight (seeded, untrained) UNet that is not flip- or permutation-symmetric segments one
synthetic case stored in five orientations (same world positions); the predictions, brought to
a common voxel order, agree on >= 99 % of voxels. The control shows that the network itself is
not symmetric, so the agreement is the canonical reordering's doing.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from decathlon.io import Geometry, read_image, write_image
from decathlon.synthetic import synthesize_case
from decathlon.testing import restore_voxel_order, store_reordered
from nasmed.infer import predict
from nasmed.models.spec import load_model
from nasmed.testing import fixed_plan, write_fixed_model

SHAPE = (36, 32, 20)


VARIANTS = {
    "as_is": ((), (0, 1, 2)),
    "flip_x": ((0,), (0, 1, 2)),
    "flip_yz": ((1, 2), (0, 1, 2)),
    "permuted": ((), (2, 0, 1)),
    "flip_permuted": ((0, 2), (1, 2, 0)),
}


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    plan = fixed_plan(spacing=(1.0, 1.0, 1.5), patch=(32, 32, 16))
    return write_fixed_model(tmp_path_factory.mktemp("fixed") / "run", plan, seed=3)


def test_predictions_agree_across_stored_orientations(model: Path, tmp_path: Path) -> None:
    image, _, _ = synthesize_case(5, 0, shape=SHAPE, classes=1)
    affine = np.diag([-1.0, -1.0, 1.5, 1.0])  # LPS, like DICOM-derived files
    affine[:3, 3] = (12.0, -30.0, 7.0)
    inputs = tmp_path / "in"
    for name, (flips, perm) in VARIANTS.items():
        arr, aff = store_reordered(image[None] if image.ndim == 3 else image, affine, flips, perm)
        write_image(inputs / f"{name}.nii.gz", arr, Geometry(aff, arr.shape[1:]), np.float32)
    out = predict(model, [inputs], tmp_path / "out", device="cpu", progress=False)
    segs = {}
    for path in out:
        name = path.name.removesuffix(".nii.gz")
        seg = read_image(path)
        src = read_image(inputs / path.name)
        assert seg.geometry.allclose(src.geometry, atol=1e-5)  # the input's exact grid
        segs[name] = restore_voxel_order(seg.array, *VARIANTS[name])
    ref = segs["as_is"]
    fg = float(np.mean(ref > 0))
    assert 0.01 < fg < 0.99, f"the fixed network predicts a trivial map (foreground {fg:.3f})"
    for name, seg in segs.items():
        agree = float(np.mean(seg == ref))
        assert agree >= 0.99, f"{name}: only {agree:.4f} of voxels agree"


def test_control_the_network_itself_is_not_flip_symmetric(model: Path) -> None:
    _, net = load_model(model)
    torch.manual_seed(0)
    x = torch.randn(1, 1, 32, 32, 16)
    with torch.no_grad():
        a = net(x).argmax(1)
        b = torch.flip(net(torch.flip(x, (2,))), (2,)).argmax(1)
    assert float((a == b).float().mean()) < 0.99
