"""The zoo's generative models: a denoising autoencoder (MagNet's reformer), a VAE (its decoder is
Defense-GAN's generator) and a diffusion model (DiffPure's score model), trained here, deterministically, and
shipped with hashes like the classifiers.

Both are small MLPs on the flattened input, with outputs mapped into the data set's bounds by a
sigmoid. The autoencoder minimises the squared error of reconstructing x from x + N(0, σ²) (Meng &
Chen 2017 train MagNet's reformer on noisy inputs the same way); the VAE minimises the squared
reconstruction error plus β·KL to N(0, I) (Kingma & Welling 2014), so its latent prior is the one
Defense-GAN draws its starts from. The diffusion model is a DDPM (Ho et al. 2020) noise predictor ε_θ(x_t, t) on
the input rescaled to [−1, 1], trained on the simple loss ‖ε − ε_θ(√ᾱ_t x + √(1 − ᾱ_t) ε, t)‖² at uniformly
drawn t (`shells.diffpure` runs its reverse process). Weights are keyed by the recipe and the training data's content
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

GENERATIVE_KINDS = ("autoencoder", "vae", "diffusion")


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


@dataclass(frozen=True)
class DiffusionRecipe:
    """Everything that determines a diffusion model's weights (part of its cache key)."""

    embedding: int  # the time embedding's width
    hidden: int
    depth: int  # hidden layers
    epochs: int
    lr: float = 2e-3
    batch_size: int = 128


RECIPES = {
    ("digits", "autoencoder"): GenerativeRecipe(latent=16, hidden=128, epochs=60),
    ("digits", "vae"): GenerativeRecipe(latent=8, hidden=128, epochs=80, beta=0.5),
    ("mnist", "autoencoder"): GenerativeRecipe(latent=32, hidden=256, epochs=12),
    ("mnist", "vae"): GenerativeRecipe(latent=16, hidden=256, epochs=15, beta=0.5),
    ("digits", "diffusion"): DiffusionRecipe(embedding=64, hidden=256, depth=3, epochs=400),
    ("mnist", "diffusion"): DiffusionRecipe(embedding=128, hidden=768, depth=3, epochs=60),
}
DIFFUSION_STEPS = 100  # T: the forward process's steps
DIFFUSION_BETAS = (1e-3, 0.2)  # linear β schedule over T = 100 (DDPM's 1e-4 … 0.02 over 1,000, rescaled)


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


def alpha_bars(steps: int = DIFFUSION_STEPS, betas: tuple[float, float] = DIFFUSION_BETAS) -> torch.Tensor:
    """ᾱ_t for t = 0 … T (float64; ᾱ_0 = 1: the clean input), from a linear β schedule."""
    beta = torch.linspace(betas[0], betas[1], steps, dtype=torch.float64)
    return torch.cat([torch.ones(1, dtype=torch.float64), torch.cumprod(1 - beta, 0)])


class Denoiser(nn.Module):
    """ε_θ(x_t, t): the noise in x_t (inputs on [−1, 1], flattened), from an MLP fed x_t and a sinusoidal embedding
    of t; `alpha_bar` is the noise schedule it was trained under (a buffer, so it travels with the weights)."""

    def __init__(self, shape: tuple[int, ...], embedding: int, hidden: int, depth: int = 3) -> None:
        super().__init__()
        features = int(torch.tensor(shape).prod())
        self.shape, self.embedding = tuple(shape), embedding
        layers: list[nn.Module] = [nn.Linear(features + embedding, hidden), nn.SiLU()]
        for _ in range(depth - 1):
            layers += [nn.Linear(hidden, hidden), nn.SiLU()]
        self.net = nn.Sequential(*layers, nn.Linear(hidden, features))
        self.register_buffer("alpha_bar", alpha_bars().float())

    @property
    def steps(self) -> int:
        """T, the number of steps of the forward process."""
        return len(self.alpha_bar) - 1

    def time_embedding(self, t: torch.Tensor) -> torch.Tensor:
        half = self.embedding // 2
        frequencies = torch.exp(-torch.arange(half, device=t.device, dtype=torch.float32) * (9.21 / max(half - 1, 1)))
        angles = t.float()[:, None] * frequencies[None]
        return torch.cat([angles.sin(), angles.cos()], dim=1)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        flat = x_t.flatten(1)
        return self.net(torch.cat([flat, self.time_embedding(t).to(flat.dtype)], dim=1)).view_as(x_t)


def _architecture(dataset: Dataset, kind: str) -> nn.Module:
    recipe = RECIPES[(dataset.name, kind)]
    if kind == "diffusion":
        return Denoiser(dataset.input_shape, recipe.embedding, recipe.hidden, recipe.depth)
    cls = Autoencoder if kind == "autoencoder" else VAE
    return cls(dataset.input_shape, recipe.latent, recipe.hidden, dataset.bounds)


def weights_name(dataset: Dataset, kind: str, seed: int) -> str:
    """The file name of a generative model's weights: recipe, training data's content and seed in the key."""
    recipe = RECIPES[(dataset.name, kind)]
    training = hashlib.sha256(dataset.x_train.float().contiguous().numpy().tobytes()).hexdigest()
    key = hashlib.sha256(repr((dataset.name, training, kind, seed, recipe)).encode())
    return f"{dataset.name}-{kind}-{seed}-{key.hexdigest()[:12]}.pt"


def to_unit_interval(x: torch.Tensor, bounds: Bounds) -> torch.Tensor:
    """Inputs in `bounds` on the diffusion model's scale, [−1, 1]."""
    return 2 * (x - bounds.lower) / bounds.width - 1


def _loss(model: nn.Module, kind: str, x: torch.Tensor, recipe: GenerativeRecipe | DiffusionRecipe,
          generator: torch.Generator, bounds: Bounds = Bounds()) -> torch.Tensor:
    if kind == "diffusion":
        clean = to_unit_interval(x, bounds)
        t = torch.randint(1, model.steps + 1, (x.shape[0],), generator=generator)
        noise = torch.randn(x.shape, generator=generator)
        a = model.alpha_bar[t].view(-1, *([1] * (x.dim() - 1)))
        return ((model(a.sqrt() * clean + (1 - a).sqrt() * noise, t) - noise) ** 2).flatten(1).sum(1).mean()
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
    if kind == "diffusion":  # initialised from the seed too (the older kinds' shipped weights predate this)
        for module in model.modules():
            if isinstance(module, nn.Linear):
                module.reset_parameters()
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=recipe.lr)
    total = recipe.epochs * -(-len(dataset.x_train) // recipe.batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=recipe.lr, total_steps=total)
    model.train()
    for _ in range(recipe.epochs):
        order = torch.randperm(len(dataset.x_train), generator=generator)
        for start in range(0, len(order), recipe.batch_size):
            loss = _loss(model, kind, dataset.x_train[order[start : start + recipe.batch_size]], recipe, generator,
                         dataset.bounds)
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
    """The zoo's `kind` model ('autoencoder', 'vae' or 'diffusion') for `dataset`: shipped, else cached, else trained
    and cached; in eval mode, its parameters frozen (a shell's part, not something an attack trains)."""
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
