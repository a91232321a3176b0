"""What a user names on the command line, loaded: models, shells and data, built-in or their own.

One loader serves `--model`, `--shell` and `--data`. Besides the built-in names each accepts
`module:factory` (an importable module) and `path/to/file.py:factory`. `--model` also accepts a
TorchScript file, a `torch.export` program (`.pt2`), or a weights file (a state dict, loaded with
`weights_only=True`) together with `--arch module:factory`. `--data` also accepts an `.npz`.

Loading a user's module or TorchScript file runs their code with the user's rights: only name
files you trust.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import logging
import os
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from robustness_eval import zoo
from robustness_eval.data import DATASETS, Dataset, load_dataset, load_npz
from robustness_eval.modules import eval_mode
from robustness_eval.validation import as_tensor

CODE_WARNING = ("module:factory and file.py:factory specs, TorchScript and export files run code: "
                "only load files you trust")


MODEL_FILE_SUFFIXES = (".pt", ".pth", ".pt2", ".ckpt", ".bin", ".safetensors", ".ts", ".jit")


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def is_code_spec(spec: str) -> bool:
    """`module:factory` or `path/file.py:factory` (not a plain name or file)."""
    head, sep, tail = str(spec).rpartition(":")
    return bool(sep and head and tail and tail.isidentifier())


def load_object(spec: str, flag: str):
    """The attribute that `module:attr` or `path/file.py:attr` names; errors name the flag."""
    if not is_code_spec(spec):
        raise ValueError(f"{flag} {spec!r}: pass module:factory or path/to/file.py:factory")
    target, _, attribute = str(spec).rpartition(":")
    if target.endswith(".py") or os.sep in target or "/" in target:
        module = _import_file(Path(target), flag)
    else:
        if os.getcwd() not in sys.path:  # a console script does not search the working directory
            sys.path.insert(0, os.getcwd())
        try:
            module = importlib.import_module(target)
        except SystemExit:
            raise ValueError(f"{flag} {spec}: importing {target!r} called sys.exit(); a module named as a factory "
                             "must import without exiting") from None
        except ImportError as error:
            raise ValueError(f"{flag} {spec}: cannot import {target!r} ({error})") from None
    found = getattr(module, attribute, None)
    if found is None:
        raise ValueError(f"{flag} {spec}: {target!r} has no attribute {attribute!r}")
    return found


def _import_file(path: Path, flag: str):
    if not path.is_file():
        raise FileNotFoundError(f"{flag} {path} does not exist (looked in {Path.cwd()})")
    if path.suffix != ".py":
        raise ValueError(f"{flag} {path}: a factory file must be Python source ending in .py (got {path.name!r}); "
                         "rename it, or name an importable module as module:factory")
    resolved = path.resolve()
    name = f"robustness_eval_user.{resolved.stem}"
    loaded = sys.modules.get(name)
    if loaded is not None and Path(getattr(loaded, "__file__", "")).resolve() == resolved:
        return loaded
    spec = importlib.util.spec_from_file_location(name, resolved)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except (Exception, SystemExit) as error:  # a script's sys.exit() at import is a failure to load, not an exit
        del sys.modules[name]
        raise ValueError(f"{flag} {path}: importing it raised {type(error).__name__}: {error}") from None
    return module


def _call_with_known(factory: Callable, flag: str, known: dict):
    """Call `factory` with the keywords from `known` that it accepts."""
    if not callable(factory):
        raise ValueError(f"{flag}: {factory!r} is not callable; name a factory function")
    try:
        parameters = inspect.signature(factory).parameters
        kwargs = {k: v for k, v in known.items() if k in parameters}
    except (TypeError, ValueError):
        kwargs = {}
    try:
        return factory(**kwargs)
    except (Exception, SystemExit) as error:
        raise ValueError(f"{flag}: the factory raised {type(error).__name__}: {error}") from None


def load_data(spec: str, data_dir: str | None = None, seed: int = 0) -> Dataset:
    """A bundled data set by name, an `.npz` file, or a factory returning a Dataset or an (x, y) pair."""
    if spec in DATASETS:
        return load_dataset(spec, data_dir, seed=seed)
    if str(spec).endswith(".npz") and not is_code_spec(spec):
        return load_npz(spec)
    if not is_code_spec(spec):
        raise ValueError(f"unknown --data {spec!r}; choose one of: {', '.join(DATASETS)}, a file.npz, "
                         "module:factory or path/to/file.py:factory")
    made = _call_with_known(load_object(spec, "--data"), "--data", {"seed": seed})
    if isinstance(made, Dataset):
        return made
    if isinstance(made, tuple | list) and len(made) == 2:
        x, y = as_tensor(made[0], "x"), as_tensor(made[1], "y")
        empty = torch.zeros(0, *x.shape[1:])
        return Dataset(str(spec).rpartition(":")[2], empty, torch.zeros(0, dtype=torch.long), x, y,
                       num_classes=int(y.max()) + 1 if len(y) else 0,
                       split={"source": str(spec), "method": "user factory, points in the order returned"})
    raise ValueError(f"--data {spec}: the factory must return a robustness_eval.data.Dataset or an (x, y) pair "
                     f"(it returned {type(made).__name__})")


def load_model(spec: str, data: Dataset, arch: str | None = None, seed: int = 0, quiet: bool = True) -> nn.Module:
    """A zoo model by name, a factory's model, a TorchScript / export program, or weights with `arch`."""
    if spec in zoo.MODEL_KINDS:
        if arch is not None:
            raise ValueError("--arch applies to a weights file given with --model; the zoo knows its architectures")
        if len(data.y_train) == 0:
            raise ValueError(f"--model {spec} is a zoo model, trained on the data set's training split, and "
                             f"{data.name!r} has none; pass your own model (--model module:factory or a file)")
        return zoo.load_model(data, spec, seed=seed, quiet=quiet)
    known = {"input_shape": data.input_shape, "num_classes": data.num_classes}
    if is_code_spec(spec):
        if arch is not None:
            raise ValueError("--arch applies to a weights file; --model module:factory builds the model itself")
        model = _call_with_known(load_object(spec, "--model"), "--model", known)
    else:
        model = _load_model_file(Path(spec), arch, known)
    if not isinstance(model, nn.Module):
        raise ValueError(f"--model {spec}: expected a torch.nn.Module, got {type(model).__name__}")
    return eval_mode(model)


def _load_model_file(path: Path, arch: str | None, known: dict) -> nn.Module:
    if path.suffix in MODEL_FILE_SUFFIXES and not path.exists():
        raise FileNotFoundError(f"--model {path}: no such file (looked in {Path.cwd()}); check the path")
    if not path.is_file():
        raise ValueError(f"unknown --model {str(path)!r}; choose one of: {', '.join(zoo.MODEL_KINDS)}, "
                         "module:factory, path/to/file.py:factory, a TorchScript or .pt2 file, or a weights "
                         "file with --arch module:factory")
    if arch is not None:
        state = _read_weights(path)
        model = _call_with_known(load_object(arch, "--arch"), "--arch", known)
        if not isinstance(model, nn.Module):
            raise ValueError(f"--arch {arch}: expected a torch.nn.Module, got {type(model).__name__}")
        try:
            model.load_state_dict(state)
        except RuntimeError as error:
            details = " ".join(line.strip() for line in str(error).splitlines()[1:] if line.strip())
            raise ValueError(f"--model {path} does not fit --arch {arch}: {_short(details, 400)}; pass the "
                             "architecture these weights were saved from") from None
        return model
    if path.suffix == ".pt2":
        return _load_export(path)
    if not zipfile.is_zipfile(path):
        raise ValueError(f"--model {path}: not a TorchScript archive; for a weights file add --arch module:factory")
    try:
        return torch.jit.load(str(path), map_location="cpu")
    except Exception:
        raise ValueError(f"--model {path}: not a TorchScript program; for a state dict (weights) add "
                         "--arch module:factory naming the architecture") from None


def _load_export(path: Path) -> nn.Module:
    """A `torch.export` program's module; anything else is one line (torch's own logged traceback held back)."""
    if not zipfile.is_zipfile(path):
        raise ValueError(f"--model {path}: not a torch.export program (not a zip archive); save one with "
                         "torch.export.save(torch.export.export(model, (x,)), 'model.pt2')")
    logger = logging.getLogger("torch.export")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        return torch.export.load(str(path)).module()
    except Exception as error:
        raise ValueError(f"--model {path}: not a torch.export program ({type(error).__name__}: "
                         f"{str(error).splitlines()[0] if str(error) else ''})") from None
    finally:
        logger.setLevel(level)


def _read_weights(path: Path) -> dict:
    if path.suffix == ".safetensors":
        raise ValueError(f"--model {path}: safetensors files are not supported; save the state dict with "
                         "torch.save(model.state_dict(), 'weights.pt')")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise ValueError(f"--model {path}: cannot read it as weights ({type(error).__name__}: "
                         f"{str(error).splitlines()[0] if str(error) else ''})") from None
    if isinstance(state, nn.Module) or not isinstance(state, dict):
        raise ValueError(f"--model {path}: expected a state dict (torch.save(model.state_dict(), ...)), "
                         f"got {type(state).__name__}")
    return state


def load_surrogate(spec: str, model: nn.Module) -> nn.Module:
    """`--bpda module:factory`: the factory called as factory(model) returns a differentiable stand-in for F."""
    factory = load_object(spec, "--bpda")
    if not callable(factory):
        raise ValueError(f"--bpda {spec}: not callable; name a factory(model) returning a module")
    try:
        surrogate = factory(model)
    except (Exception, SystemExit) as error:
        raise ValueError(f"--bpda {spec}: the factory raised {type(error).__name__}: {error}") from None
    if not isinstance(surrogate, nn.Module):
        raise ValueError(f"--bpda {spec}: expected a torch.nn.Module, got {type(surrogate).__name__}")
    return eval_mode(surrogate)


def shell_surrogate_factory(spec: str) -> Callable:
    """`--shell-surrogate module:factory`: a factory called like a shell factory, building the shell's surrogate."""
    factory = load_object(spec, "--shell-surrogate")
    if not callable(factory):
        raise ValueError(f"--shell-surrogate {spec}: not callable; name a factory(model, **options) returning a "
                         "module with the shell's interface")
    return factory


def shell_factory(spec: str) -> Callable:
    """A registered shell's factory by name, or the user's `module:factory` / `file.py:factory`."""
    from shells.registry import shell_factories

    factories = shell_factories()
    if spec in factories:
        return factories[spec]
    if not is_code_spec(spec):
        raise ValueError(f"unknown shell {spec!r}; choose one of: {', '.join(factories)}, "
                         "or pass module:factory / path/to/file.py:factory")
    factory = load_object(spec, "--shell")
    if not callable(factory):
        raise ValueError(f"--shell {spec}: not callable; name a factory(model, **options) returning a shell")
    return factory
