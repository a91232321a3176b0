"""Model zoo: small classifiers trained here, deterministically, and cached on disk.

`standard` models minimise cross-entropy; `adversarial` models are PGD-trained (Madry et al.
2018) at the data set's default ε. Weights are stored as a state dict and loaded with
`torch.load(weights_only=True)`.

Training is deterministic on one machine but not bit-identical across machines (BLAS kernels
differ), so the weights of the bundled recipes (digits, synthetic and the MNIST t10k split, seed 0)
ship inside the package under `zoo_weights/` with their hashes: every machine evaluates the same
model. Other models are trained on first use and cached in `$ROBUSTNESS_EVAL_CACHE` (default
`~/.cache/robustness_eval`); `robustness-eval train --retrain` retrains and says whether the
result matches the shipped weights.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from robustness_eval.ascent import ascent_step
from robustness_eval.data import Dataset
from robustness_eval.norms import project, random_in_ball
from robustness_eval.progress import progress
from robustness_eval.types import Norm, Threat

MODEL_KINDS = ("standard", "adversarial")
SHIPPED_DIR = Path(__file__).resolve().parent / "zoo_weights"
SHIPPED_INDEX = SHIPPED_DIR / "hashes.json"


@dataclass(frozen=True)
class TrainingRecipe:
    """Everything that determines a zoo model's weights (part of its cache key)."""

    epochs: int
    lr: float
    batch_size: int
    adv_eps: float
    adv_steps: int
    adv_norm: str = "linf"
    eps_warmup_epochs: int = 0


RECIPES = {
    ("digits", "standard"): TrainingRecipe(40, 1e-3, 64, 0.0, 0),
    ("digits", "adversarial"): TrainingRecipe(40, 1e-3, 64, 0.1, 7),
    ("synthetic", "standard"): TrainingRecipe(30, 1e-3, 64, 0.0, 0),
    ("synthetic", "adversarial"): TrainingRecipe(30, 1e-3, 64, 0.05, 7),
    ("mnist", "standard"): TrainingRecipe(6, 1e-3, 64, 0.0, 0),
    ("mnist", "adversarial"): TrainingRecipe(10, 2e-3, 64, 0.3, 5, eps_warmup_epochs=3),
    ("cifar10", "standard"): TrainingRecipe(10, 2e-3, 128, 0.0, 0),
    ("cifar10", "adversarial"): TrainingRecipe(10, 2e-3, 128, 8 / 255, 5, eps_warmup_epochs=2),
}


class MLP(nn.Module):
    """Flatten → two ReLU hidden layers → logits."""

    def __init__(self, in_features: int, num_classes: int, hidden: int = 256) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Flatten(), nn.Linear(in_features, hidden), nn.ReLU(),
            nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class SmallCNN(nn.Module):
    """Two conv/pool blocks and a dense head (1×28×28 MNIST, 3×32×32 CIFAR-10)."""

    def __init__(self, num_classes: int = 10, channels: int = 1) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(channels, 16, 3), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.head = nn.Sequential(
            nn.Flatten(), nn.LazyLinear(128), nn.ReLU(), nn.Linear(128, num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def build_architecture(dataset: Dataset) -> nn.Module:
    """The zoo's architecture for a data set: a CNN for images, an MLP otherwise."""
    if dataset.is_image:
        model = SmallCNN(dataset.num_classes, dataset.input_shape[0])
        model(torch.zeros(1, *dataset.input_shape))  # materialise the lazy layer
        return model
    return MLP(int(torch.tensor(dataset.input_shape).prod()), dataset.num_classes)


def cache_dir() -> Path:
    """Where zoo weights live: $ROBUSTNESS_EVAL_CACHE or ~/.cache/robustness_eval."""
    root = os.environ.get("ROBUSTNESS_EVAL_CACHE") or Path.home() / ".cache" / "robustness_eval"
    return Path(root)


def model_hash(model: nn.Module) -> str:
    """A short SHA-256 of the model's parameters and buffers, for reproducibility blocks."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def weights_name(dataset: Dataset, kind: str, seed: int) -> str:
    """The file name of a zoo model's weights: the recipe, the training data's content and the seed in
    the key (not the data's path, so a copy of the data anywhere finds the same weights)."""
    recipe = RECIPES[(dataset.name, kind)]
    training = hashlib.sha256(dataset.x_train.float().contiguous().numpy().tobytes()
                              + dataset.y_train.long().contiguous().numpy().tobytes()).hexdigest()
    key = hashlib.sha256(repr((dataset.name, training, kind, seed, recipe)).encode())
    return f"{dataset.name}-{kind}-{seed}-{key.hexdigest()[:12]}.pt"


def shipped_hash(dataset: Dataset, kind: str, seed: int = 0) -> str | None:
    """The model hash of the shipped weights for this recipe, or None when none ship."""
    if not SHIPPED_INDEX.exists():
        return None
    return json.loads(SHIPPED_INDEX.read_text()).get(weights_name(dataset, kind, seed))


def load_model(dataset: Dataset, kind: str = "adversarial", seed: int = 0,
               retrain: bool = False, quiet: bool = True) -> nn.Module:
    """The zoo model for `dataset`: shipped weights, else cached, else trained once and cached; in eval mode."""
    if kind not in MODEL_KINDS:
        raise ValueError(f"unknown model {kind!r}; choose one of: {', '.join(MODEL_KINDS)}, "
                         "or pass your own torch.nn.Module to evaluate()")
    if (dataset.name, kind) not in RECIPES:
        raise ValueError(f"the zoo has no {kind} model for data set {dataset.name!r}; pass your own model")
    model = build_architecture(dataset)
    recipe = RECIPES[(dataset.name, kind)]
    load_or_train(model, weights_name(dataset, kind, seed), lambda: train(model, dataset, recipe, seed, quiet=quiet),
                  retrain)
    model.zoo_kind = kind  # reports call it by its zoo name
    return model.eval()


def load_or_train(model: nn.Module, name: str, train_in_place, retrain: bool = False) -> nn.Module:
    """Fill `model` with the weights `name`: shipped (hash-checked against `hashes.json`), else cached, else
    trained by `train_in_place()` and cached atomically (a crash never leaves half a file under the name)."""
    shipped, cached = SHIPPED_DIR / name, cache_dir() / name
    if shipped.exists() and not retrain:
        model.load_state_dict(torch.load(shipped, weights_only=True))
        expected = json.loads(SHIPPED_INDEX.read_text()).get(name) if SHIPPED_INDEX.exists() else None
        if model_hash(model) != expected:
            raise RuntimeError(f"shipped weights {shipped} do not match their recorded hash {expected}; "
                               "reinstall the package")
    elif cached.exists() and not retrain:
        model.load_state_dict(torch.load(cached, weights_only=True))
    else:
        train_in_place()
        cached.parent.mkdir(parents=True, exist_ok=True)
        partial = cached.with_suffix(".tmp")
        torch.save(model.state_dict(), partial)
        partial.replace(cached)
    return model


def _pgd_examples(model: nn.Module, x: torch.Tensor, y: torch.Tensor, threat: Threat,
                  steps: int, generator: torch.Generator) -> torch.Tensor:
    """PGD with a random start on cross-entropy, the inner maximisation of adversarial training."""
    z = project(x + random_in_ball(tuple(x.shape), threat.eps, threat.norm, generator),
                x, threat.eps, threat.norm, threat.bounds)
    step = 2.5 * threat.eps / steps
    for _ in range(steps):
        z.requires_grad_(True)
        loss = nn.functional.cross_entropy(model(z), y, reduction="none")
        z = ascent_step(z, loss, x, threat.eps, threat.norm, threat.bounds, step)
    return z


def train(model: nn.Module, dataset: Dataset, recipe: TrainingRecipe, seed: int = 0,
          quiet: bool = True) -> nn.Module:
    """Train in place, deterministically from `seed` (Adam, cosine schedule)."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()
    optimizer = torch.optim.Adam(model.parameters(), lr=recipe.lr)
    total = recipe.epochs * -(-len(dataset.y_train) // recipe.batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=recipe.lr, total_steps=total)
    bar = progress(range(recipe.epochs), desc=f"train {dataset.name}", disable=quiet)
    for epoch in bar:
        model.train()
        order = torch.randperm(len(dataset.y_train), generator=generator)
        ramp = min(1.0, (epoch + 1) / recipe.eps_warmup_epochs) if recipe.eps_warmup_epochs else 1.0
        threat = Threat(Norm.parse(recipe.adv_norm), recipe.adv_eps * ramp, dataset.bounds)
        for start in range(0, len(order), recipe.batch_size):
            batch = order[start : start + recipe.batch_size]
            x, y = dataset.x_train[batch], dataset.y_train[batch]
            if recipe.adv_steps:
                model.eval()
                x = _pgd_examples(model, x, y, threat, recipe.adv_steps, generator)
                model.train()
            loss = nn.functional.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
    return model.eval()


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1000) -> float:
    """Clean accuracy of a logits model on (x, y)."""
    with torch.no_grad():
        correct = sum(
            (model(x[i : i + batch_size]).argmax(1) == y[i : i + batch_size]).sum().item()
            for i in range(0, len(y), batch_size)
        )
    return correct / max(len(y), 1)
