"""The zoo's generative models: a denoising autoencoder (MagNet's reformer) and a VAE (its decoder is
Defense-GAN's generator), trained here, deterministically, and shipped with hashes like the classifiers.

Both are small MLPs on the flattened input, with outputs mapped into the data set's bounds by a
sigmoid. The autoencoder minimises the squared error of reconstructing x from x + N(0, σ²) (Meng &
Chen 2017 train MagNet's reformer on noisy inputs the same way); the VAE minimises the squared
reconstruction error plus β·KL to N(0, I) (Kingma & Welling 2014), so its latent prior is the one
Defense-GAN draws its starts from. Weights are keyed by the recipe and the training data's content
(`weights_name`), shipped under `zoo_weights/` for the bundled data sets, cached otherwise.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import torch
from torch import nn

from robustness_eval.data import Dataset
from robustness_eval.types import Bounds
from robustness_eval.zoo import SHIPPED_INDEX, load_or_train

GENERATIVE_KINDS = ("autoencoder", "vae")


@dataclass(frozen=True)
class GenerativeRecipe:
    """Everything that determines a generative model's weights (part of its cache key)."""

    latent: int
    hidden: int
    epochs: int
    lr: float = 2e-3
    batch_size: int = 64
    noise: float = 0.1  # the autoencoder's input noise σ
    beta: float = 1.0  # the VAE's KL weight


RECIPES = {
    ("digits", "autoencoder"): GenerativeRecipe(latent=16, hidden=128, epochs=60),
    ("digits", "vae"): GenerativeRecipe(latent=8, hidden=128, epochs=80, beta=0.5),
    ("mnist", "autoencoder"): GenerativeRecipe(latent=32, hidden=256, epochs=12),
    ("mnist", "vae"): GenerativeRecipe(latent=16, hidden=256, epochs=15, beta=0.5),
}


class _InBounds(nn.Module):
    """A sigmoid into [lower, upper], reshaped to the input shape."""

    def __init__(self, shape: tuple[int, ...], bounds: Bounds) -> None:
        super().__init__()
        self.shape, self.lower, self.width = shape, bounds.lower, bounds.width

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return (self.lower + self.width * torch.sigmoid(h)).view(-1, *self.shape)


class Autoencoder(nn.Module):
    """x → encoder → code → decoder → x̂ in the bounds; differentiable end to end."""

    def __init__(self, shape: tuple[int, ...], latent: int, hidden: int, bounds: Bounds = Bounds()) -> None:
        super().__init__()
        features = int(torch.tensor(shape).prod())
        self.encoder = nn.Sequential(nn.Flatten(), nn.Linear(features, hidden), nn.ReLU(), nn.Linear(hidden, latent))
        self.decoder = nn.Sequential(nn.Linear(latent, hidden), nn.ReLU(), nn.Linear(hidden, features),
                                     _InBounds(shape, bounds))
        self.latent = latent

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


class VAE(nn.Module):
    """A Gaussian-latent autoencoder; `decoder` maps z ~ N(0, I) to inputs in the bounds (the generator)."""

    def __init__(self, shape: tuple[int, ...], latent: int, hidden: int, bounds: Bounds = Bounds()) -> None:
        super().__init__()
        features = int(torch.tensor(shape).prod())
        self.encoder = nn.Sequential(nn.Flatten(), nn.Linear(features, hidden), nn.ReLU(),
                                     nn.Linear(hidden, 2 * latent))
        self.decoder = nn.Sequential(nn.Linear(latent, hidden), nn.ReLU(), nn.Linear(hidden, features),
                                     _InBounds(shape, bounds))
        self.latent = latent

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mean, log_var = self.encoder(x).chunk(2, dim=1)
        return mean, log_var, self.decoder(mean)


def _architecture(dataset: Dataset, kind: str) -> nn.Module:
    recipe = RECIPES[(dataset.name, kind)]
    cls = Autoencoder if kind == "autoencoder" else VAE
    return cls(dataset.input_shape, recipe.latent, recipe.hidden, dataset.bounds)


def weights_name(dataset: Dataset, kind: str, seed: int) -> str:
    """The file name of a generative model's weights: recipe, training data's content and seed in the key."""
    recipe = RECIPES[(dataset.name, kind)]
    training = hashlib.sha256(dataset.x_train.float().contiguous().numpy().tobytes()).hexdigest()
    key = hashlib.sha256(repr((dataset.name, training, kind, seed, recipe)).encode())
    return f"{dataset.name}-{kind}-{seed}-{key.hexdigest()[:12]}.pt"


def _loss(model: nn.Module, kind: str, x: torch.Tensor, recipe: GenerativeRecipe,
          generator: torch.Generator) -> torch.Tensor:
    if kind == "autoencoder":
        noisy = x + recipe.noise * torch.randn(x.shape, generator=generator)
        return ((model(noisy) - x) ** 2).flatten(1).sum(1).mean()
    mean, log_var = model.encoder(x).chunk(2, dim=1)
    z = mean + torch.randn(mean.shape, generator=generator) * (0.5 * log_var).exp()
    reconstruction = ((model.decoder(z) - x) ** 2).flatten(1).sum(1)
    kl = 0.5 * (mean ** 2 + log_var.exp() - 1 - log_var).sum(1)
    return (reconstruction + recipe.beta * kl).mean()


def train_generative(model: nn.Module, dataset: Dataset, kind: str, seed: int = 0) -> nn.Module:
    """Train in place on the training split, deterministically from `seed` (Adam, one-cycle schedule)."""
    recipe = RECIPES[(dataset.name, kind)]
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=recipe.lr)
    total = recipe.epochs * -(-len(dataset.x_train) // recipe.batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=recipe.lr, total_steps=total)
    model.train()
    for _ in range(recipe.epochs):
        order = torch.randperm(len(dataset.x_train), generator=generator)
        for start in range(0, len(order), recipe.batch_size):
            loss = _loss(model, kind, dataset.x_train[order[start : start + recipe.batch_size]], recipe, generator)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
    return model.eval()


def shipped_generative_hash(dataset: Dataset, kind: str, seed: int = 0) -> str | None:
    """The model hash of the shipped weights for this recipe, or None when none ship."""
    if not SHIPPED_INDEX.exists():
        return None
    return json.loads(SHIPPED_INDEX.read_text()).get(weights_name(dataset, kind, seed))


def load_generative(dataset: Dataset, kind: str = "autoencoder", seed: int = 0, retrain: bool = False) -> nn.Module:
    """The zoo's `kind` model ('autoencoder' or 'vae') for `dataset`: shipped, else cached, else trained and
    cached; in eval mode, its parameters frozen (a shell's part, not something an attack trains)."""
    if kind not in GENERATIVE_KINDS:
        raise ValueError(f"unknown generative model {kind!r}; choose one of: {', '.join(GENERATIVE_KINDS)}")
    if (dataset.name, kind) not in RECIPES:
        known = sorted({name for name, _ in RECIPES})
        raise ValueError(f"the zoo has no {kind} for data set {dataset.name!r} (it has: {', '.join(known)}); "
                         "pass your own trained module to the shell instead")
    model = _architecture(dataset, kind)
    load_or_train(model, weights_name(dataset, kind, seed), lambda: train_generative(model, dataset, kind, seed),
                  retrain)
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model.eval()
