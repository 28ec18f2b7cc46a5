"""data/survey.py: what a training run's data holds, and one clear line for data that cannot train."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from data_helpers import random_image, write_mnist_folder
from maskgit.data.survey import MIN_IMAGES, DataError, ImageArrayDataset, held_out_indices, survey_data
from maskgit.data.synthetic import SHAPE_CLASSES, write_shapes_folder


def test_class_folders_are_surveyed_and_split(tmp_path):
    write_shapes_folder(tmp_path, per_class=10, size=16)
    survey = survey_data(tmp_path)
    assert survey.kind == "class folders" and survey.class_names == tuple(sorted(s.name for s in SHAPE_CLASSES))
    assert survey.count == 30 and survey.sizes == {(16, 16): 30} and survey.colour == 30 and survey.grey == 0
    assert (survey.train_count, survey.held_out_count) == (27, 3) and survey.notes == () and survey.size_notes(16) == []
    datasets = survey.datasets(16, flips=False)
    assert len(datasets.train) == 27 and len(datasets.held_out) == 3
    # Held-out images are not trained on: none of them is among the training images.
    train = torch.stack([datasets.plain[i][0] for i in range(27)])
    for image, _ in datasets.held_out:
        assert not (train == image).flatten(1).all(1).any()
    # Pixels are the files' pixels.
    first = survey.folder.path(0)
    expected = torch.from_numpy(np.array(Image.open(first))).permute(2, 0, 1).float() / 255
    index = next(i for i in range(27) if torch.equal(datasets.plain[i][0], expected))
    assert datasets.plain[index][1] == 0


def test_held_out_is_a_seeded_tenth_of_every_class():
    labels = np.repeat(np.arange(3), [20, 5, 1])
    held = held_out_indices(labels, seed=0)
    assert np.array_equal(held, held_out_indices(labels, seed=0))
    assert sorted(np.bincount(labels[held], minlength=3)) == [0, 1, 2]  # a class of one keeps its image
    assert len(held_out_indices(np.zeros(50_000, dtype=int), 0)) == 1000


def test_a_flat_folder_is_one_class(tmp_path):
    for index in range(MIN_IMAGES):
        random_image(20, 20, seed=index).save(tmp_path / f"{index}.png")
    survey = survey_data(tmp_path)
    assert survey.kind == "one folder" and survey.class_names == (tmp_path.name,)


def test_split_folders_give_the_held_out_set(tmp_path):
    write_shapes_folder(tmp_path / "train", per_class=6, size=16)
    write_shapes_folder(tmp_path / "val", per_class=2, size=16, seed=3)
    survey = survey_data(tmp_path)
    assert (survey.train_count, survey.held_out_count) == (18, 6)
    assert len(survey.datasets(16, flips=True).held_out) == 6


def test_bad_data_is_one_clear_line(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match=rf"no images .*at least {MIN_IMAGES} are needed"):
        survey_data(empty)
    few = tmp_path / "few"
    write_shapes_folder(few, per_class=2, size=16)
    with pytest.raises(DataError, match=rf"6 images; at least {MIN_IMAGES} are needed"):
        survey_data(few)
    broken = tmp_path / "broken"
    write_shapes_folder(broken, per_class=6, size=16)
    (broken / "red-disc" / "bad.png").write_bytes(b"not a png")
    (broken / "green-square" / "cut.jpg").write_bytes(b"\xff\xd8\xff")
    with pytest.raises(DataError, match=r"2 unreadable image files: .*cut.jpg .*bad.png"):
        survey_data(broken)
    with pytest.raises(FileNotFoundError, match="no such folder"):
        survey_data(tmp_path / "absent")


def test_a_truncated_file_is_named_when_it_is_decoded(tmp_path):
    write_shapes_folder(tmp_path, per_class=6, size=16)
    path = tmp_path / "red-disc" / "0001.png"
    path.write_bytes(path.read_bytes()[:60])  # the header still opens
    survey = survey_data(tmp_path)
    with pytest.raises(DataError, match=r"1 unreadable image file: .*0001.png"):
        survey.datasets(16, flips=False)


def test_mixed_sizes_and_grey_images_are_noted(tmp_path):
    write_shapes_folder(tmp_path, per_class=6, size=16)
    random_image(40, 30, seed=1, mode="L").save(tmp_path / "red-disc" / "grey.png")
    survey = survey_data(tmp_path)
    assert survey.grey == 1 and survey.colour == 18 and survey.is_colour
    assert any("grey and colour images mixed (1 grey, 18 colour)" in note for note in survey.notes)
    assert "images of 2 sizes (16x16, 40x30): each is resized" in survey.size_notes(16)[0]
    datasets = survey.datasets(16, flips=False)
    assert all(image.shape == (3, 16, 16) for image, _ in datasets.plain)


def test_idx_datasets_use_their_test_split(tmp_path):
    write_mnist_folder(tmp_path, train=20, test=4)
    survey = survey_data(f"mnist:{tmp_path}")
    assert survey.kind == "mnist" and (survey.train_count, survey.held_out_count) == (20, 4) and not survey.is_colour
    assert survey.size_notes(32) == ["28x28 images: padded with black to 32x32"]
    datasets = survey.datasets(32, flips=False)
    assert len(datasets.held_out) == 4 and datasets.train[0][0].shape == (3, 32, 32)


def test_image_array_dataset_flips_with_torch_rng():
    images = torch.arange(2 * 3 * 4 * 4, dtype=torch.uint8).view(2, 3, 4, 4)
    dataset = ImageArrayDataset(images, np.array([0, 1]), ("a", "b"), flips=True)
    seen = set()
    for seed in range(8):
        torch.manual_seed(seed)
        seen.add(bool(torch.equal(dataset[0][0], images[0].float() / 255)))
    assert seen == {True, False}
    with pytest.raises(ValueError, match="uint8"):
        ImageArrayDataset(images.float(), np.array([0, 1]), ("a", "b"))
