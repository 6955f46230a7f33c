"""imagefolder:DIR read with Pillow and the ImageNet transforms, on a tiny folder written here."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from mptc.data import load_dataset
from mptc.data.imagefolder import CROP, IMAGENET_MEAN, IMAGENET_STD, imagenet_transform
from mptc.errors import InputError


def write(path, array: np.ndarray, mode: str | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array, mode).save(path)


def test_a_uniform_image_normalises_with_the_imagenet_mean_and_std(tmp_path):
    write(tmp_path / "grey.png", np.full((300, 260, 3), (10, 128, 250), np.uint8))
    x = imagenet_transform(tmp_path / "grey.png")
    expected = (np.array([10, 128, 250], np.float32).reshape(3, 1, 1) / 255 - IMAGENET_MEAN) / IMAGENET_STD
    assert x.shape == (3, CROP, CROP) and x.dtype == np.float32
    np.testing.assert_allclose(x, np.broadcast_to(expected, x.shape), rtol=0, atol=1e-6)


def test_the_shorter_side_becomes_256_and_the_centre_224_is_cropped(tmp_path):
    # 512 wide, 256 high: no resize, the crop starts at column round(288 / 2) = 144 and row 16.
    columns = np.broadcast_to(np.arange(512) % 256, (256, 512)).astype(np.uint8)
    rows = np.broadcast_to((np.arange(256) % 256)[:, None], (256, 512)).astype(np.uint8)
    write(tmp_path / "ramp.png", np.stack([columns, rows, np.zeros_like(rows)], axis=-1))
    x = imagenet_transform(tmp_path / "ramp.png")
    red = np.rint((x[0] * IMAGENET_STD[0] + IMAGENET_MEAN[0]) * 255)
    green = np.rint((x[1] * IMAGENET_STD[1] + IMAGENET_MEAN[1]) * 255)
    np.testing.assert_array_equal(red[0], np.arange(144, 144 + CROP) % 256)
    np.testing.assert_array_equal(green[:, 0], np.arange(16, 16 + CROP))


def test_grayscale_and_small_images_become_3x224x224(tmp_path):
    write(tmp_path / "small.png", np.full((20, 30), 200, np.uint8), "L")
    x = imagenet_transform(tmp_path / "small.png")
    assert x.shape == (3, CROP, CROP)
    np.testing.assert_allclose(x[:, 100, 100], ((200 / 255 - IMAGENET_MEAN) / IMAGENET_STD).reshape(3), atol=1e-5)


@pytest.fixture
def folder(tmp_path):
    rng = np.random.default_rng(0)
    for split, count in (("train", 3), ("val", 2)):
        for label, name in enumerate(("cat", "dog")):
            for index in range(count):
                image = rng.integers(0, 256, (40 + index, 50, 3), dtype=np.uint8)
                image[..., 0] = 255 * label  # the class shows in the red channel
                write(tmp_path / split / name / f"{index}.jpg", image)
    (tmp_path / "train" / "cat" / "notes.txt").write_text("not an image")
    return tmp_path


def test_a_folder_loads_as_an_augmented_data_set_labelled_by_sorted_class(folder):
    data = load_dataset(f"imagefolder:{folder}")
    assert (data.input_shape, data.num_classes, data.augment) == ((3, CROP, CROP), 2, True)
    assert data.train.x.shape == (6, 3, CROP, CROP) and len(data.test) == 4
    assert data.train.y.tolist() == [0, 0, 0, 1, 1, 1] and data.test.y.tolist() == [0, 0, 1, 1]
    red = data.train.x[:, 0].mean(dim=(1, 2))
    assert bool((red[3:] > red[:3].max()).all())


def test_a_val_class_unknown_to_train_is_refused(folder):
    write(folder / "val" / "bird" / "0.png", np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(InputError, match="bird is a class that"):
        load_dataset(f"imagefolder:{folder}")


def test_an_unreadable_image_is_named(folder):
    (folder / "val" / "dog" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(InputError, match=r"cannot read image .*broken\.png"):
        load_dataset(f"imagefolder:{folder}")


@pytest.mark.parametrize("missing", ["train", "val"])
def test_a_folder_without_train_or_val_is_refused(folder, missing):
    import shutil

    shutil.rmtree(folder / missing)
    with pytest.raises(InputError, match="needs train/ and val/"):
        load_dataset(f"imagefolder:{folder}")
