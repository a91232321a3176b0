"""The shell protocol: a module whose forward returns class probabilities of G[F](x).

A shell wraps a base classifier F (a module mapping inputs in `bounds` to logits). What a shell
offers is declared as *capabilities*, and attacks are matched to shells by them, never by name:

- ``search``: a deterministic factor shell G = F ∘ H exposes `search(x)`, the point z* = H(x);
- ``per-class-search``: `per_class_search(x)` gives the per-class candidates z_t and their
  confidences as log-odds (MCN; min-max and look-ahead use it);
- ``ball-ascent``: the per-class search is projected ascent on F(z)_t inside the `radius` ball
  (an unrolled copy of it is a faithful BPDA surrogate);
- ``sampling``: a randomized shell exposes `sample_points(x)`, one query's random neighbours;
- ``deterministic``: the same input always gets the same answer;
- ``differentiable``: forward keeps the graph from x to G(x) (class attribute `differentiable`), so
  white-box attacks run on G end to end;
- ``surrogate``: `surrogate()` returns a module for gradients only, with G's interface (probabilities, graph
  kept): a shorter diffusion chain, an unrolled search. Attacks differentiate it (averaging over its draws when
  it is random); every break is verified on G itself. A user passes one for any shell with `shell_surrogate=`;
- ``reseed``: a randomized shell whose `reseed(seed)` fixes every draw, so attacks can fix its randomness.

`capabilities(shell)` derives them from what the shell implements; a shell may declare its own
set in the class attribute `capabilities`. `rebuild(model, **options)` builds the same shell
around another model (the active test and the δ → 0 ablation need it).

A subclass's constructor arguments are recorded once, when it is built (`shell_arguments`), and
both `describe()` (what a run's config binds, so a resume with any other argument is refused) and
`rebuild()` are derived from that record; `option_parameters` names the constructor parameter a
suite option (delta, p, norm, bounds, seed, search_dtype) sets where the names differ.

A shell with many settings keeps them in a small dataclass, its `settings_type`: the constructor takes them as
keywords (`**settings`), `use_settings` validates them there (one place, shared where shells share a search) and
sets them as attributes, and the constructor's signature lists every setting by name, so inspection, option
binding and the record see them as ordinary keyword parameters.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from typing import Any, ClassVar

import torch
from torch import nn

from robustness_eval.modules import eval_mode
from robustness_eval.types import Bounds, Norm

CAPABILITIES = ("search", "per-class-search", "ball-ascent", "sampling", "deterministic", "differentiable", "surrogate",
                "reseed")
SHELL_OPTIONS = ("delta", "p", "norm", "bounds", "seed", "search_dtype")


def with_settings(init, settings_type: type) -> inspect.Signature:
    """`init`'s signature with its `**settings` replaced by the fields of the dataclass `settings_type`, as keyword
    parameters with their defaults."""
    signature = inspect.signature(init)
    kept = [p for p in signature.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
    settings = [inspect.Parameter(item.name, inspect.Parameter.KEYWORD_ONLY, default=item.default,
                                  annotation=item.type) for item in dataclasses.fields(settings_type)]
    return signature.replace(parameters=[*kept, *settings])


def _recording(init):
    """`init`, recording its bound arguments (defaults applied, the model left out) as `shell_arguments`
    once the outermost constructor of the instance's class has finished."""
    signature = inspect.signature(init)

    @functools.wraps(init)
    def recorded_init(self, *args, **kwargs):
        init(self, *args, **kwargs)
        if type(self).__init__ is not recorded_init:  # a subclass's constructor records its own arguments
            return
        bound = signature.bind(self, *args, **kwargs)
        bound.apply_defaults()
        arguments = {}
        for position, (name, value) in enumerate(bound.arguments.items()):
            kind = signature.parameters[name].kind
            if position < 2:  # self and the base model
                continue
            if kind is inspect.Parameter.VAR_KEYWORD:
                arguments.update(value)
            elif kind is not inspect.Parameter.VAR_POSITIONAL:
                arguments[name] = value
        self.shell_arguments = arguments

    return recorded_init


def plain(value: Any):
    """A constructor argument as JSON data: enums by value, bounds as [lower, upper], a shell by its
    description, another module or tensor by class and content hash."""
    from robustness_eval.zoo import model_hash

    if isinstance(value, Norm):
        return value.value
    if isinstance(value, Bounds):
        return [value.lower, value.upper]
    if isinstance(value, Shell):
        return value.describe()
    if isinstance(value, nn.Module):
        return {"module": f"{type(value).__module__}.{type(value).__qualname__}", "hash": model_hash(value)}
    if isinstance(value, torch.Tensor):
        return {"tensor": list(value.shape), "hash": model_hash(nn.ParameterList([nn.Parameter(value.detach())]))}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return repr(value)


class Shell(nn.Module):
    """Base class: subclasses implement `search` (deterministic factor shells) or `forward`."""

    kind: ClassVar[str] = "abstract"
    randomized: ClassVar[bool] = False
    differentiable: ClassVar[bool] = False  # True: forward keeps the graph from x to G(x)
    capabilities: ClassVar[frozenset[str] | None] = None  # None: derived by `capabilities(shell)`
    option_parameters: ClassVar[dict[str, str]] = {}  # suite option → constructor parameter, where they differ
    settings_type: ClassVar[type | None] = None  # a dataclass of the settings `__init__` takes as **settings
    shell_arguments: dict[str, Any]

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        if "__init__" in cls.__dict__:
            init = cls.__dict__["__init__"]
            if "settings_type" in cls.__dict__:
                init.__signature__ = with_settings(init, cls.settings_type)
            cls.__init__ = _recording(init)

    def use_settings(self, given: dict[str, Any]) -> Any:
        """This shell's `settings_type` built (and validated) from the keywords `given`, its fields set as the
        shell's attributes (`shell.steps`); a TypeError names a keyword it does not take and the ones it does."""
        names = [item.name for item in dataclasses.fields(self.settings_type)]
        unknown = sorted(set(given) - set(names))
        if unknown:
            raise TypeError(f"{type(self).__name__} takes no setting {', '.join(map(repr, unknown))}; its settings "
                            f"are: {', '.join(names)}")
        settings = self.settings_type(**given)
        for name in names:
            setattr(self, name, getattr(settings, name))
        return settings

    def __init__(self, model: nn.Module, norm: Norm | str = Norm.LINF,
                 bounds: Bounds = Bounds()) -> None:
        super().__init__()
        if not isinstance(model, nn.Module):
            raise TypeError("`model` must be a torch.nn.Module returning logits "
                            f"(got {type(model).__name__})")
        self.base_model = eval_mode(model)
        self.norm = Norm.parse(norm)
        self.bounds = bounds

    radius: float = 0.0
    threshold: float | None = None

    def search(self, x: torch.Tensor) -> torch.Tensor:
        """The point z* that the shell classifies (x itself for the identity shell)."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class probabilities G(x) = softmax(F(search(x))); no graph back to x."""
        z = self.search(x)
        with torch.no_grad():
            return torch.softmax(self.base_model(z), dim=1)

    def rebuild(self, model: nn.Module, **options) -> Shell:
        """The same shell around `model`, from its recorded constructor arguments; `options` (delta, p, norm,
        bounds, seed, search_dtype) override the parameters they set, and a shell passed as an argument is
        rebuilt around `model` too."""
        if not hasattr(self, "shell_arguments"):
            raise NotImplementedError(f"{type(self).__name__} cannot rebuild itself around another model; "
                                      "pass a factory(model, **options) instead of an instance")
        arguments = dict(self.shell_arguments)
        for option, value in options.items():
            name = self.option_parameters.get(option, option)
            if name in arguments:
                arguments[name] = value
        for name, value in arguments.items():
            if isinstance(value, Shell):
                arguments[name] = value.rebuild(model, **options)
        return type(self)(model, **arguments)

    def describe(self) -> dict:
        """The shell's public parameters and every constructor argument, as a run's config binds them."""
        described = {"kind": self.kind, "norm": self.norm.value, "radius": self.radius,
                     "threshold": self.threshold, "randomized": self.randomized}
        for name, value in getattr(self, "shell_arguments", {}).items():
            described.setdefault(name, plain(value))
        return described


class RandomizedShell(Shell):
    """Base class of shells that draw from their own generator: `reseed(seed)` restarts the sequence, so a seed
    fixes every answer (the suite reseeds before each unit of work)."""

    randomized = True

    def reseed(self, seed: int) -> None:
        """Restart the shell's random sequence from `seed`."""
        self.seed = seed
        self.generator = torch.Generator(device="cpu").manual_seed(seed)


def capabilities(shell: nn.Module) -> frozenset[str]:
    """What `shell` offers to attacks (see the module docstring): declared, or derived from its methods."""
    declared = getattr(shell, "capabilities", None)
    if declared is not None:
        return frozenset(declared)
    offered = set()
    randomized = bool(getattr(shell, "randomized", False))
    search = getattr(type(shell), "search", None)
    if callable(search) and search is not Shell.search and not randomized:
        offered.add("search")
    if callable(getattr(shell, "per_class_search", None)):
        offered.add("per-class-search")
    if randomized and callable(getattr(shell, "sample_points", None)):
        offered.add("sampling")
    if not randomized:
        offered.add("deterministic")
    if getattr(shell, "differentiable", False):
        offered.add("differentiable")
    if callable(getattr(shell, "surrogate", None)):
        offered.add("surrogate")
    if randomized and callable(getattr(shell, "reseed", None)):
        offered.add("reseed")
    return frozenset(offered)


def can_rebuild(shell: nn.Module) -> bool:
    """Whether the suite can build `shell` around another model: a `Shell` with recorded arguments, or any
    module with its own `rebuild`."""
    method = getattr(type(shell), "rebuild", None)
    if isinstance(shell, Shell) and method is Shell.rebuild:
        return hasattr(shell, "shell_arguments")
    return callable(method)


class IdentityShell(Shell):
    """The base model itself (δ = 0), so every report shows base and shell side by side."""

    kind = "none"
    capabilities = frozenset({"deterministic"})  # its trivial search offers attacks nothing

    def __init__(self, model: nn.Module, norm: Norm | str = Norm.LINF, bounds: Bounds = Bounds()) -> None:
        super().__init__(model, norm, bounds)

    def search(self, x: torch.Tensor) -> torch.Tensor:
        return x.detach().clone()
