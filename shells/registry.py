"""Shells by name: the built-in factories and those third-party packages register.

A shell factory is called as `factory(model, **options)` with the shell options `delta`, `p`,
`norm`, `bounds`, `seed` and `search_dtype`; `call_factory` passes only the keywords the factory accepts (all of
them if it takes `**options`), so a factory may ignore options it does not use. A package adds
shells under the entry-point group `robustness_eval.shells` (name = factory), and they are
listed and built exactly like the built-in ones.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from importlib.metadata import entry_points

from torch import nn

from robustness_eval.types import Bounds, Norm
from shells.base import SHELL_OPTIONS, IdentityShell
from shells.bit_depth import BitDepthShell
from shells.defense_gan import DefenseGANShell
from shells.diffpure import DiffPureShell
from shells.jpeg import JPEGShell
from shells.magnet import MagNetShell
from shells.mcn import MCNShell
from shells.ncn import NCNShell
from shells.resize_pad import ResizePadShell
from shells.tvm import TVMShell
from shells.vote import VoteShell

ENTRY_POINT_GROUP = "robustness_eval.shells"


def mcn(model: nn.Module, delta: float, norm: Norm | str = "linf", bounds: Bounds = Bounds(),
        seed: int = 0, search_dtype: str = "float32") -> MCNShell:
    """MCN_δ: the most confident neighbour within δ."""
    return MCNShell(model, delta, norm, bounds, seed=seed, search_dtype=search_dtype)


def ncn(model: nn.Module, delta: float, p: float = 0.9, norm: Norm | str = "linf",
        bounds: Bounds = Bounds(), seed: int = 0, search_dtype: str = "float32") -> NCNShell:
    """NCN_p: the nearest p-confident neighbour, searched within radius δ."""
    return NCNShell(model, p, norm, bounds, max_radius=delta, seed=seed, search_dtype=search_dtype)


def vote(model: nn.Module, delta: float, norm: Norm | str = "linf", bounds: Bounds = Bounds(),
         seed: int = 0) -> VoteShell:
    """A weighted majority vote over random neighbours within δ."""
    return VoteShell(model, delta, norm, bounds, seed=seed)


def identity(model: nn.Module, norm: Norm | str = "linf", bounds: Bounds = Bounds()) -> IdentityShell:
    """No shell: the base model itself."""
    return IdentityShell(model, norm, bounds)


def _zoo_part(dataset, kind: str, shell: str, cls: str) -> nn.Module:
    """The zoo's generative model `kind` for `dataset`, or a clear error naming what to pass instead."""
    from robustness_eval.generative import load_generative

    if dataset is None:
        raise ValueError(f"the {shell} shell needs a {kind} trained on the data: run it on a bundled data set "
                         f"(--data digits or mnist; evaluate() passes a Dataset to factories taking `dataset`), "
                         f"or build shells.{cls}(model, <your trained module>) yourself")
    return load_generative(dataset, kind)


def magnet(model: nn.Module, bounds: Bounds = Bounds(), dataset=None) -> MagNetShell:
    """MagNet's reformer: F(AE(x)) with the zoo's denoising autoencoder for `dataset`."""
    return MagNetShell(model, _zoo_part(dataset, "autoencoder", "magnet", "MagNetShell"), bounds)


def defense_gan(model: nn.Module, bounds: Bounds = Bounds(), dataset=None) -> DefenseGANShell:
    """Defense-GAN: the closest reconstruction by the zoo's VAE decoder for `dataset` (L = 100, R = 8), unlimited."""
    vae = _zoo_part(dataset, "vae", "defense-gan", "DefenseGANShell")
    return DefenseGANShell(model, vae.decoder, vae.latent, bounds=bounds)


def defense_gan_delta(model: nn.Module, delta: float, bounds: Bounds = Bounds(), dataset=None) -> DefenseGANShell:
    """Defense-GAN's reconstruction moved back into the δ-ball of x (L∞)."""
    vae = _zoo_part(dataset, "vae", "defense-gan-delta", "DefenseGANShell")
    return DefenseGANShell(model, vae.decoder, vae.latent, radius=delta, bounds=bounds)


def jpeg(model: nn.Module, bounds: Bounds = Bounds()) -> JPEGShell:
    """JPEG compression at quality 75."""
    return JPEGShell(model, 75, bounds)


def tvm(model: nn.Module, bounds: Bounds = Bounds(), seed: int = 0) -> TVMShell:
    """TVM from 70 % of the pixels, kept at random (Guo et al. keep 50 % of 224² images; on 8 × 8 digits that
    costs 15 pp of clean accuracy, 70 % costs 4); randomized."""
    return TVMShell(model, keep=0.7, bounds=bounds, seed=seed)


def bit_depth(model: nn.Module, bounds: Bounds = Bounds()) -> BitDepthShell:
    """Bit-depth reduction to 1 bit (Xu et al.'s MNIST setting)."""
    return BitDepthShell(model, 1, bounds)


def resize_pad(model: nn.Module, bounds: Bounds = Bounds(), seed: int = 0) -> ResizePadShell:
    """Random resizing and padding (randomized, differentiable)."""
    return ResizePadShell(model, bounds=bounds, seed=seed)


def diffpure(model: nn.Module, bounds: Bounds = Bounds(), seed: int = 0, dataset=None) -> DiffPureShell:
    """DiffPure with the zoo's diffusion model for `dataset`: diffused to t* = 10 of T = 100 (ᾱ = 0.90, the noise
    level of Nie et al.'s t* = 0.1 on CIFAR-10), 10 reverse steps; its surrogate takes 2 (randomized,
    differentiable)."""
    return DiffPureShell(model, _zoo_part(dataset, "diffusion", "diffpure", "DiffPureShell"), t_star=10, steps=10,
                         surrogate_steps=2, bounds=bounds, seed=seed)


BUILT_IN: dict[str, Callable[..., nn.Module]] = {
    "mcn": mcn, "ncn": ncn, "vote": vote, "none": identity, "defense-gan": defense_gan,
    "defense-gan-delta": defense_gan_delta, "magnet": magnet, "jpeg": jpeg, "tvm": tvm, "bit-depth": bit_depth,
    "resize-pad": resize_pad, "diffpure": diffpure,
}


def takes_dataset(factory: Callable) -> bool:
    """Whether `factory` names a `dataset` parameter (a defense with a part trained on the data)."""
    try:
        return "dataset" in inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return False


def shell_factories() -> dict[str, Callable[..., nn.Module]]:
    """Every named shell factory: the built-in ones, then those registered by installed packages."""
    found = dict(BUILT_IN)
    for point in entry_points(group=ENTRY_POINT_GROUP):
        found.setdefault(point.name, point.load())
    return found


def accepted_options(factory: Callable, options: dict) -> dict:
    """The subset of `options` that `factory` takes as keywords (all of them if it takes **options)."""
    try:
        parameters = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):  # a builtin or C callable: pass everything
        return dict(options)
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return dict(options)
    names = {p.name for p in parameters if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                                       inspect.Parameter.KEYWORD_ONLY)}
    return {k: v for k, v in options.items() if k in names}


def call_factory(factory: Callable, model: nn.Module, options: dict) -> nn.Module:
    """`factory(model, **options)` with only the options it accepts."""
    unknown = sorted(set(options) - set(SHELL_OPTIONS))
    if unknown:
        raise ValueError(f"unknown shell option(s) {', '.join(unknown)}; shell options are: "
                         f"{', '.join(SHELL_OPTIONS)}")
    return factory(model, **accepted_options(factory, options))


def build_shell(kind: str, model: nn.Module, norm: Norm | str, bounds: Bounds, delta: float, dataset=None,
                **options) -> nn.Module:
    """The registered shell `kind` around `model` with the given shell options (p = 0.9 and seed = 0 unless given;
    `dataset`: the data a defense's generative part is trained on, for factories that take it)."""
    factories = shell_factories()
    if kind not in factories:
        raise ValueError(f"unknown shell {kind!r}; choose one of: {', '.join(factories)}, "
                         "or pass module:factory / path/to/file.py:factory")
    factory = factories[kind]
    if dataset is not None and takes_dataset(factory):
        factory = functools.partial(factory, dataset=dataset)
    return call_factory(factory, model, {"p": 0.9, "seed": 0, **options, "delta": delta, "norm": norm,
                                         "bounds": bounds})
