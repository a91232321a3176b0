"""Data readers: IDX files (gzipped or not), clear errors, deterministic synthetic ground truth."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest
import torch

from robustness_eval.data import load_dataset, load_mnist, make_synthetic, read_idx


def _write_idx(path, array: np.ndarray, compress: bool) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    if compress:
        with gzip.open(str(path) + ".gz", "wb") as handle:
            handle.write(payload)
    else:
        path.write_bytes(payload)


@pytest.mark.parametrize("compress", [True, False])
def test_mnist_reader_reads_idx_layout_and_splits_t10k(tmp_path, compress):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(30, 28, 28))
    labels = rng.integers(0, 10, size=30)
    _write_idx(tmp_path / "t10k-images-idx3-ubyte", images, compress)
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte", labels, compress)
    data = load_mnist(tmp_path, train_size=20)
    assert data.x_train.shape == (20, 1, 28, 28) and data.x_test.shape == (10, 1, 28, 28)
    assert torch.allclose(data.x_test[0, 0], torch.from_numpy(images[20] / 255.0).float())
    assert data.y_test.tolist() == labels[20:].tolist()
    assert data.split["train"] == "t10k[0:20]"


def test_mnist_reader_names_the_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="t10k-images-idx3-ubyte"):
        load_mnist(tmp_path)


def test_idx_rejects_truncated_and_bad_magic():
    with pytest.raises(ValueError, match="magic"):
        read_idx(b"\x00\x00\x0d\x01\x00\x00\x00\x01\x00")
    with pytest.raises(ValueError, match="truncated"):
        read_idx(bytes([0, 0, 8, 1]) + struct.pack(">I", 5) + b"\x01\x02")


def test_synthetic_is_deterministic_and_its_labels_are_ground_truth():
    a, b = make_synthetic(seed=4), make_synthetic(seed=4)
    assert torch.equal(a.x_test, b.x_test)
    assert torch.equal(a.true_label(a.x_test), a.y_test)
    assert torch.equal(a.true_label(a.x_train), a.y_train)
    assert not torch.equal(make_synthetic(seed=5).x_test, a.x_test)


def test_unknown_dataset_lists_valid_names():
    with pytest.raises(ValueError, match="choose one of: digits, mnist, synthetic, cifar10"):
        load_dataset("cifar100")


def _write_cifar_batch(path, images: np.ndarray, labels: list[int]) -> None:
    import pickle

    with open(path, "wb") as handle:
        pickle.dump({b"data": images.reshape(len(labels), -1), b"labels": labels, b"batch_label": b"x"}, handle)


def test_cifar10_reader_reads_the_python_batches(tmp_path):
    rng = np.random.default_rng(1)
    train = rng.integers(0, 256, size=(6, 3, 32, 32), dtype=np.uint8)
    test = rng.integers(0, 256, size=(4, 3, 32, 32), dtype=np.uint8)
    _write_cifar_batch(tmp_path / "data_batch_1", train, [0, 1, 2, 3, 4, 5])
    _write_cifar_batch(tmp_path / "test_batch", test, [9, 8, 7, 6])
    data = load_dataset("cifar10", tmp_path)
    assert data.x_train.shape == (6, 3, 32, 32) and data.x_test.shape == (4, 3, 32, 32)
    assert torch.allclose(data.x_test[2], torch.from_numpy(test[2] / 255.0).float())
    assert data.y_test.tolist() == [9, 8, 7, 6] and data.is_image
    with pytest.raises(FileNotFoundError, match="test_batch"):
        load_dataset("cifar10", tmp_path / "missing")
    with pytest.raises(ValueError, match="--data-dir"):
        load_dataset("cifar10")
