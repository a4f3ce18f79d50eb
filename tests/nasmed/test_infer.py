"""``predict``: outputs lie exactly on the input's grid (RAS, LPS, oblique, anisotropic), input
layouts (MSD 3D/4D, nnU-Net per-channel, MetaImage), and bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from decathlon.errors import DatasetError
from decathlon.io import Geometry, read_image, write_image
from decathlon.synthetic import synthesize_case
from nasmed.errors import RunDirError
from nasmed.infer import find_inputs, predict


def _affine(
    spacing: tuple[float, float, float], signs: tuple[int, int, int], degrees: float = 0.0
) -> np.ndarray:
    t = np.deg2rad(degrees)
    rot = np.array([[np.cos(t), -np.sin(t), 0], [np.sin(t), np.cos(t), 0], [0, 0, 1.0]])
    affine = np.eye(4)
    affine[:3, :3] = rot @ np.diag(np.asarray(signs, float) * np.asarray(spacing))
    affine[:3, 3] = (12.5, -30.0, 7.25)
    return affine


GEOMETRIES = {
    "ras": ((36, 32, 20), _affine((1.0, 1.0, 1.5), (1, 1, 1))),
    "lps": ((32, 40, 24), _affine((0.9, 0.9, 2.0), (-1, -1, 1))),
    "oblique": ((32, 32, 24), _affine((1.0, 0.8, 1.5), (1, 1, 1), degrees=17.0)),
    "anisotropic": ((40, 40, 12), _affine((0.7, 0.7, 3.5), (1, -1, 1))),
}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("inputs")
    for i, (name, (shape, affine)) in enumerate(GEOMETRIES.items()):
        image, _, _ = synthesize_case(5, i, shape=shape, classes=1)
        write_image(folder / f"{name}.nii.gz", image, Geometry(affine, shape), dtype=np.int16)
    return folder


def test_outputs_lie_on_the_input_grid(trained_unet: Path, inputs: Path, tmp_path: Path) -> None:
    out = predict(trained_unet, [inputs], tmp_path / "pred", device="cpu", progress=False)
    assert sorted(p.name for p in out) == sorted(f"{n}.nii.gz" for n in GEOMETRIES)
    for path in out:
        name = path.name.removesuffix(".nii.gz")
        shape, affine = GEOMETRIES[name]
        seg = read_image(path)
        assert seg.array.shape == (1, *shape)
        assert np.allclose(seg.geometry.affine, affine, atol=1e-5), name
        ref = read_image(inputs / path.name)
        assert np.allclose(seg.geometry.affine, ref.geometry.affine, atol=1e-6)
        assert seg.array.dtype == np.uint8 and set(np.unique(seg.array)) <= {0, 1}
        assert (seg.array == 1).any(), name  # the organ is found


def test_input_layouts(trained_unet: Path, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    shape, affine = GEOMETRIES["lps"]
    image, _, _ = synthesize_case(5, 1, shape=shape, classes=1)
    g = Geometry(affine, shape)
    write_image(folder / "nnu_case_0000.nii.gz", image, g, dtype=np.int16)  # nnU-Net naming
    write_image(folder / "meta.mha", image, g)
    cases = find_inputs([folder])
    assert sorted(c.name for c in cases) == ["meta", "nnu_case"]
    out = predict(
        trained_unet,
        [folder / "nnu_case_0000.nii.gz", folder / "meta.mha"],
        tmp_path / "pred",
        device="cpu",
        progress=False,
        tta_mirror=True,
    )
    assert [p.name for p in out] == ["nnu_case.nii.gz", "meta.nii.gz"]
    a, b = read_image(out[0]), read_image(out[1])
    assert np.allclose(a.geometry.affine, affine, atol=1e-5)
    assert np.allclose(b.geometry.affine, affine, atol=1e-4)
    assert np.array_equal(a.array, b.array)


def test_nnunet_channels_are_grouped(tmp_path: Path) -> None:
    for name in ("b_0001", "b_0000", "a_0000", "c_0003"):
        write_image(
            tmp_path / f"{name}.nii.gz", np.zeros((4, 4, 4)), Geometry(np.eye(4), (4, 4, 4))
        )
    cases = {c.name: [f.name for f in c.files] for c in find_inputs([tmp_path])}
    assert cases == {
        "a": ["a_0000.nii.gz"],
        "b": ["b_0000.nii.gz", "b_0001.nii.gz"],
        "c_0003": ["c_0003.nii.gz"],
    }


def test_channel_mismatch_is_one_line_and_writes_nothing(
    trained_unet: Path, tmp_path: Path
) -> None:
    shape, affine = GEOMETRIES["ras"]
    image, _, _ = synthesize_case(5, 0, shape=shape, classes=1, modalities=2)
    bad = write_image(tmp_path / "two.nii.gz", image, Geometry(affine, shape))
    good = tmp_path / "ok.nii.gz"
    write_image(good, image[:1], Geometry(affine, shape))
    out = tmp_path / "pred"
    with pytest.raises(
        DatasetError, match=r"two\.nii\.gz: 2 channel\(s\), but the model was trained on 1"
    ) as info:
        predict(trained_unet, [good, bad], out, device="cpu", progress=False)
    assert len(str(info.value).splitlines()) == 1
    assert not out.exists()  # the good case was not written either
    with pytest.raises(DatasetError, match="input not found"):
        predict(trained_unet, [tmp_path / "missing.nii.gz"], out, device="cpu")
    with pytest.raises(RunDirError, match="model file not found"):
        predict(tmp_path, [good], out, device="cpu")


def test_a_batch_reads_each_image_once_and_mirroring_matches_by_hand(
    trained_unet: Path, inputs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import itertools

    import torch

    import nasmed.infer as infer
    from nasmed.models.spec import load_model

    reads: list[str] = []
    real = infer.read_image

    def counting(path: Path, **kw: object) -> object:
        reads.append(Path(path).name)
        return real(path, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(infer, "read_image", counting)
    predict(trained_unet, [inputs], tmp_path / "pred", device="cpu", progress=False)
    assert sorted(reads) == sorted(f"{n}.nii.gz" for n in GEOMETRIES)  # once each, not twice
    # the mirrored prediction is the mean softmax over the 8 flips, each run on its own
    spec, net = load_model(trained_unet)
    array = np.random.default_rng(0).normal(size=(1, 40, 36, 20)).astype(np.float32)
    got = infer.predict_probabilities(
        net, array, spec.patch, device=torch.device("cpu"), tta_mirror=True
    )
    flips = [f for r in range(4) for f in itertools.combinations((2, 3, 4), r)]
    want = np.mean(
        [
            np.flip(
                infer.predict_probabilities(
                    net,
                    np.ascontiguousarray(np.flip(array, [d - 1 for d in f])),
                    spec.patch,
                    device=torch.device("cpu"),
                ),
                [d - 1 for d in f],
            )
            for f in flips
        ],
        axis=0,
    )
    assert got.shape == (2, 40, 36, 20)
    assert np.allclose(got, want, atol=1e-5)


def test_amp_predicts_in_bfloat16_and_agrees(
    trained_unet: Path, inputs: Path, tmp_path: Path
) -> None:
    import torch

    from nasmed.engine.precision import Precision
    from nasmed.errors import ConfigError
    from nasmed.infer import predict_probabilities
    from nasmed.models.spec import load_model

    spec, net = load_model(trained_unet)
    array = np.random.default_rng(1).normal(size=(1, 40, 36, 20)).astype(np.float32)
    cpu = torch.device("cpu")
    plain = predict_probabilities(net, array, spec.patch, device=cpu)
    half = predict_probabilities(
        net, array, spec.patch, device=cpu, precision=Precision("bf16", cpu)
    )
    assert half.dtype == np.float32 and np.allclose(half.sum(0), 1.0, atol=1e-4)
    assert 0 < np.abs(half - plain).max() < 0.05  # bfloat16 ran, and it is close
    assert (half.argmax(0) == plain.argmax(0)).mean() > 0.98
    paths = predict(trained_unet, [inputs], tmp_path / "a", device="cpu", progress=False, amp=True)
    assert len(paths) == len(GEOMETRIES)
    with pytest.raises(ConfigError, match="fp16 needs a CUDA"):
        predict(trained_unet, [inputs], tmp_path / "b", device="cpu", amp=True, amp_dtype="fp16")
    with pytest.raises(ConfigError, match="another backend"):
        predict(trained_unet, [inputs], tmp_path / "c", device="cpu", amp=True, network=net)
    assert not (tmp_path / "b").exists() and not (tmp_path / "c").exists()
