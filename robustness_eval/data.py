"""Data sets: scikit-learn's digits, MNIST-layout IDX directories, and synthetic manifolds.

A `Dataset` carries train and test tensors, the input bounds, and a `split` description that
lands in every run's config so a report says exactly which points were trained and evaluated on.
"""

from __future__ import annotations

import gzip
import struct
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from robustness_eval.types import Bounds, check_positive_int

DATASETS = ("digits", "mnist", "synthetic", "cifar10")
DEFAULT_MNIST_DIR = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "mnist"


@dataclass
class Dataset:
    """Train/test tensors in `bounds`; `true_label` is set where ground truth is known."""

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int
    bounds: Bounds = Bounds(0.0, 1.0)
    split: dict = field(default_factory=dict)
    true_label: Callable[[torch.Tensor], torch.Tensor] | None = None

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_test.shape[1:])

    @property
    def is_image(self) -> bool:
        return len(self.input_shape) == 3


def load_dataset(name: str, data_dir: str | Path | None = None, seed: int = 0) -> Dataset:
    """Load a data set by name; `data_dir` points MNIST at a directory in the IDX layout."""
    if name == "digits":
        return load_digits()
    if name == "mnist":
        return load_mnist(data_dir or DEFAULT_MNIST_DIR)
    if name == "synthetic":
        return make_synthetic(seed=seed)
    if name == "cifar10":
        if data_dir is None:
            raise ValueError("--dataset cifar10 needs --data-dir pointing at the CIFAR-10 python batches "
                             "(data_batch_1 … data_batch_5, test_batch)")
        return load_cifar10(data_dir)
    raise ValueError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}")


def load_digits(test_fraction: float = 0.2) -> Dataset:
    """scikit-learn's bundled 8×8 digits scaled to [0, 1], a fixed stratified split."""
    from sklearn.datasets import load_digits as sk_digits
    from sklearn.model_selection import train_test_split

    bunch = sk_digits()
    x = (bunch.data / 16.0).astype(np.float32)
    y = bunch.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(
        x, y, test_size=test_fraction, random_state=0, stratify=y
    )
    return Dataset(
        "digits",
        torch.from_numpy(x_tr), torch.from_numpy(y_tr),
        torch.from_numpy(x_te), torch.from_numpy(y_te),
        num_classes=10,
        split={"source": "sklearn.datasets.load_digits", "train": len(y_tr), "test": len(y_te),
               "method": "stratified train_test_split, random_state=0"},
    )


def _open_idx(directory: Path, stem: str) -> bytes:
    for candidate in (directory / stem, directory / f"{stem}.gz"):
        if candidate.exists():
            opener = gzip.open if candidate.suffix == ".gz" else open
            with opener(candidate, "rb") as handle:
                return handle.read()
    raise FileNotFoundError(
        f"missing MNIST file {stem!r} (or {stem}.gz) in {directory}; pass --data-dir pointing at a "
        "directory in the standard IDX layout"
    )


def read_idx(raw: bytes) -> np.ndarray:
    """Decode one IDX file (unsigned-byte data, any number of dimensions)."""
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ValueError("not an unsigned-byte IDX file (bad magic number)")
    ndim = raw[3]
    dims = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise ValueError(f"IDX file truncated: expected {int(np.prod(dims))} values, got {data.size}")
    return data.reshape(dims)


def load_mnist(directory: str | Path, train_size: int = 8000) -> Dataset:
    """MNIST (or Fashion-MNIST) from a directory in the IDX layout, gzipped or not.

    With the full set (train and t10k files) the standard split is used. With only the
    10,000-image t10k files, the first `train_size` images train and the rest are held out.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"--data-dir {directory} is not a directory")
    test_x = read_idx(_open_idx(directory, "t10k-images-idx3-ubyte"))
    test_y = read_idx(_open_idx(directory, "t10k-labels-idx1-ubyte"))
    try:
        train_x = read_idx(_open_idx(directory, "train-images-idx3-ubyte"))
        train_y = read_idx(_open_idx(directory, "train-labels-idx1-ubyte"))
        split = {"source": str(directory), "method": "standard train / t10k split",
                 "train": len(train_y), "test": len(test_y)}
    except FileNotFoundError:
        check_positive_int(train_size, "train_size")
        if train_size >= len(test_y):
            raise ValueError(f"`train_size` must be below {len(test_y)} (got {train_size})") from None
        train_x, train_y = test_x[:train_size], test_y[:train_size]
        test_x, test_y = test_x[train_size:], test_y[train_size:]
        split = {"source": str(directory), "method": "t10k only: first images train, rest held out",
                 "train": f"t10k[0:{train_size}]", "test": f"t10k[{train_size}:{train_size + len(test_y)}]"}

    def to_tensor(images: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1)

    return Dataset(
        "mnist", to_tensor(train_x), torch.from_numpy(train_y.astype(np.int64)),
        to_tensor(test_x), torch.from_numpy(test_y.astype(np.int64)), num_classes=10, split=split,
    )


@dataclass(frozen=True)
class ManifoldSet:
    """Class k lives on the affine box {c_k + U_k s : s ∈ [-extent, extent]^m}.

    The true label of any point is the class whose box is nearest; the boxes are placed so that
    the nearest-box label of every sample (noise radius `noise`) is its generating class.
    """

    centers: torch.Tensor  # (K, d)
    bases: torch.Tensor  # (K, d, m), orthonormal columns
    extent: float
    noise: float

    def distances(self, x: torch.Tensor) -> torch.Tensor:
        """Euclidean distance of each row of `x` to each class manifold (shape: n × K)."""
        offset = x[:, None, :] - self.centers[None]  # n, K, d
        coords = torch.einsum("nkd,kdm->nkm", offset, self.bases).clamp(-self.extent, self.extent)
        nearest = self.centers[None] + torch.einsum("kdm,nkm->nkd", self.bases, coords)
        return (x[:, None, :] - nearest).norm(dim=2)

    def true_label(self, x: torch.Tensor) -> torch.Tensor:
        return self.distances(x.reshape(x.shape[0], -1)).argmin(dim=1)


def make_synthetic(
    seed: int = 0, num_classes: int = 3, dim: int = 20, manifold_dim: int = 2,
    n_train: int = 1500, n_test: int = 600, extent: float = 0.15, noise: float = 0.05,
) -> Dataset:
    """Points near `num_classes` flat `manifold_dim`-dimensional boxes in [0, 1]^dim.

    Centres are drawn until every pair of boxes is more than 2·noise + 0.1 apart (checked on a
    dense sample), so a sample's generating class is also its nearest-manifold label.
    """
    check_positive_int(num_classes, "num_classes")
    g = torch.Generator().manual_seed(seed)
    for _ in range(1000):
        centers = 0.3 + 0.4 * torch.rand(num_classes, dim, generator=g)
        bases = torch.linalg.qr(torch.randn(num_classes, dim, manifold_dim, generator=g)).Q
        manifolds = ManifoldSet(centers, bases, extent, noise)
        probe = _sample(manifolds, 400, torch.zeros(num_classes * 400, dtype=torch.long), g, 0.0)
        gaps = manifolds.distances(probe)
        own = torch.arange(num_classes).repeat_interleave(400)
        gaps[torch.arange(len(own)), own] = float("inf")
        if gaps.min() > 2 * noise + 0.1:
            break
    else:  # pragma: no cover - parameters chosen so this never happens
        raise RuntimeError("could not place separated manifolds; lower extent or noise")

    def split(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        labels = torch.arange(n) % num_classes
        labels = labels[torch.randperm(n, generator=g)]
        return _sample(manifolds, None, labels, g, noise), labels

    x_tr, y_tr = split(n_train)
    x_te, y_te = split(n_test)
    return Dataset(
        "synthetic", x_tr, y_tr, x_te, y_te, num_classes,
        split={"source": "make_synthetic", "seed": seed, "classes": num_classes, "dim": dim,
               "manifold_dim": manifold_dim, "train": n_train, "test": n_test},
        true_label=manifolds.true_label,
    )


def _sample(
    manifolds: ManifoldSet, per_class: int | None, labels: torch.Tensor, g: torch.Generator,
    noise: float,
) -> torch.Tensor:
    """Draw points on the manifolds (per_class each, or one per entry of `labels`) plus noise."""
    k, d, m = manifolds.bases.shape
    if per_class is not None:
        labels = torch.arange(k).repeat_interleave(per_class)
    coords = (torch.rand(len(labels), m, generator=g) * 2 - 1) * manifolds.extent
    points = manifolds.centers[labels] + torch.einsum("ndm,nm->nd", manifolds.bases[labels], coords)
    direction = torch.randn(len(labels), d, generator=g)
    direction = direction / direction.norm(dim=1, keepdim=True)
    radius = noise * torch.rand(len(labels), 1, generator=g)
    return (points + direction * radius).clamp(0.0, 1.0)


def _unpickle(path: Path) -> dict:
    import pickle

    with open(path, "rb") as handle:
        return pickle.load(handle, encoding="bytes")


def load_cifar10(directory: str | Path) -> Dataset:
    """CIFAR-10 from the standard python batches (`data_batch_1` … `data_batch_5`, `test_batch`).

    Whichever training batches exist are used; `test_batch` is required.
    """
    directory = Path(directory)
    if (directory / "cifar-10-batches-py").is_dir():
        directory = directory / "cifar-10-batches-py"
    test_path = directory / "test_batch"
    if not test_path.exists():
        raise FileNotFoundError(f"missing CIFAR-10 file 'test_batch' in {directory}; pass --data-dir pointing at "
                                "the extracted python batches")
    train_paths = sorted(directory.glob("data_batch_*"))
    if not train_paths:
        raise FileNotFoundError(f"missing CIFAR-10 files 'data_batch_1' … in {directory}")

    def read(paths: list[Path]) -> tuple[torch.Tensor, torch.Tensor]:
        parts = [_unpickle(p) for p in paths]
        images = np.concatenate([np.asarray(p[b"data"], dtype=np.uint8) for p in parts])
        labels = np.concatenate([np.asarray(p[b"labels"], dtype=np.int64) for p in parts])
        x = torch.from_numpy(images.reshape(-1, 3, 32, 32).astype(np.float32) / 255.0)
        return x, torch.from_numpy(labels)

    x_tr, y_tr = read(train_paths)
    x_te, y_te = read([test_path])
    return Dataset("cifar10", x_tr, y_tr, x_te, y_te, num_classes=10,
                   split={"source": str(directory), "train": [p.name for p in train_paths], "test": "test_batch"})


def _npz_array(archive, key: str, path: Path) -> np.ndarray:
    try:
        return archive[key]
    except ValueError as error:  # object arrays need pickle, which is never allowed
        raise ValueError(f"--data {path}: array {key} cannot be read without pickle ({error}); save numeric "
                         "arrays (x.astype(numpy.float32), y.astype(numpy.int64))") from None
    except (OSError, EOFError, zipfile.BadZipFile) as error:
        raise ValueError(f"--data {path}: array {key} is damaged ({type(error).__name__}: {error}); "
                         "write the file again") from None


def load_npz(path: str | Path) -> Dataset:
    """A user's evaluation points from an `.npz` with `x`, `y` and optional scalar `lower`, `upper`.

    The points are used in file order; there is no training split (bring your own model).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--data {path} does not exist")
    if path.stat().st_size == 0:
        raise ValueError(f"--data {path} is empty (0 bytes); pass an .npz written by numpy.savez")
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise ValueError(f"--data {path} is not a readable .npz file ({type(error).__name__}: {error}); pass an "
                         ".npz written by numpy.savez") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise ValueError(f"--data {path} holds a single array, not an .npz archive of x and y; "
                         "save with numpy.savez(path, x=..., y=...)")
    with archive:
        missing = [key for key in ("x", "y") if key not in archive.files]
        if missing:
            raise ValueError(f"--data {path} lacks the array(s) {', '.join(missing)}; an .npz needs x (inputs) and "
                             f"y (integer labels), optionally lower and upper (scalar bounds); it holds: "
                             f"{', '.join(archive.files) or 'nothing'}")
        arrays = {key: _npz_array(archive, key, path) for key in ("x", "y", "lower", "upper") if key in archive.files}
    x, y = arrays["x"], arrays["y"]
    for key in ("lower", "upper"):
        if key in arrays and (arrays[key].ndim != 0 or not np.issubdtype(arrays[key].dtype, np.number)):
            raise ValueError(f"--data {path}: {key} must be one number, the bound of every input value (got "
                             f"an array of shape {arrays[key].shape}, dtype {arrays[key].dtype}); per-feature "
                             "bounds are not supported: rescale x to one common range")
    lower = float(arrays["lower"]) if "lower" in arrays else 0.0
    upper = float(arrays["upper"]) if "upper" in arrays else 1.0
    if not np.issubdtype(x.dtype, np.number) or np.issubdtype(x.dtype, np.complexfloating):
        raise ValueError(f"--data {path}: x must hold real numbers (got dtype {x.dtype})")
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"--data {path}: y must hold integer labels (got dtype {y.dtype})")
    if y.ndim != 1 or x.ndim < 2 or len(x) != len(y) or len(y) == 0:
        raise ValueError(f"--data {path}: x must be (n, ...) and y (n,) with the same n ≥ 1 "
                         f"(got x {x.shape}, y {y.shape})")
    x_test = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    y_test = torch.from_numpy(y.astype(np.int64))
    empty = torch.zeros(0, *x_test.shape[1:])
    return Dataset(path.stem, empty, torch.zeros(0, dtype=torch.long), x_test, y_test,
                   num_classes=int(y_test.max()) + 1, bounds=Bounds(lower, upper),
                   split={"source": str(path), "method": "user .npz, points in file order", "test": len(y_test)})
