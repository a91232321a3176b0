"""The probe: the model, the shell and a BPDA stand-in tried on small batches before any work.

Shape checks alone let through the outputs that change reported numbers without an error: NaN
or infinite logits, a shell that returns logits or unnormalised scores, one that breaks only
for batches larger than two, a forward that edits its input in place (which changes the points
every later attack sees), and randomness nobody declared (whose "verified" breaks do not
reproduce). Each is tried here on batches of several sizes; an error names the argument and the
fix, a warning says what the run does about it. Nothing is computed for the report.
"""

from __future__ import annotations

import time
import warnings

import torch
from torch import nn

from robustness_eval.modules import eval_mode

PROBE_SIZES = (1, 3, 16)
SUM_TOLERANCE = 1e-3  # a float32 softmax row sums to 1 within ~1e-6; a vote's weights within rounding
REPEAT_TOLERANCE = 1e-4


def probe_batches(x: torch.Tensor) -> list[torch.Tensor]:
    """The first 1, 3 and 16 points of `x` (as many of those sizes as `x` holds), as fresh copies."""
    sizes = sorted({min(size, len(x)) for size in PROBE_SIZES})
    return [x[:size].clone() for size in sizes]


def _call(module: nn.Module, batch: torch.Tensor, argument: str, role: str,
          timings: dict[str, float] | None = None) -> torch.Tensor:
    """module(batch) without gradients; a crash or an in-place edit of the batch is a ValueError naming `argument`.
    `timings[argument]` gets the call's seconds per point (the last, largest probe batch's stands: what the cost
    estimate reads, so no forward is run only to be timed)."""
    kept = batch.clone()
    try:
        start = time.perf_counter()
        with torch.no_grad():
            out = module(batch)
        if timings is not None:
            if batch.is_cuda:  # kernels run asynchronously: wait for them before reading the clock
                torch.cuda.synchronize(batch.device)
            timings[argument] = (time.perf_counter() - start) / len(batch)
    except Exception as error:
        raise ValueError(f"`{argument}` fails on a batch of {len(batch)} point(s) of shape {tuple(batch.shape[1:])} "
                         f"and dtype {batch.dtype}: {type(error).__name__}: {error}; pass {role} that takes "
                         "these inputs, or data of the shape and dtype it takes") from error
    if not torch.equal(batch, kept):
        raise ValueError(f"`{argument}` modified its input tensor in place (for a batch of {len(batch)}), which "
                         "would change the points every later attack sees; use out-of-place operations "
                         "(x = x.clamp(...), not x.clamp_(...) or x.data[...] = ...) or clone the input first")
    if not isinstance(out, torch.Tensor):
        raise TypeError(f"`{argument}` must return a tensor (it returned {type(out).__name__})")
    return out


def _is_probability_rows(out: torch.Tensor) -> bool:
    """Every row ≥ 0 and summing to 1, and not all one-hot (0/1 scores are hard decisions, not a softmax)."""
    one_hot = bool(((out == 0) | (out == 1)).all())
    return not one_hot and bool((out >= 0).all()) and bool(((out.sum(1) - 1).abs() <= SUM_TOLERANCE).all())


def _differs(first: torch.Tensor, second: torch.Tensor) -> bool:
    return (not torch.allclose(first, second, atol=REPEAT_TOLERANCE, rtol=REPEAT_TOLERANCE)
            or not torch.equal(first.argmax(1), second.argmax(1)))


def probe_model(model, x: torch.Tensor, y: torch.Tensor,
                timings: dict[str, float] | None = None) -> tuple[int, list[str]]:
    """F returns finite floating logits of shape (batch, classes ≥ 2) for every probe size, leaves its input
    alone and takes x's dtype; labels lie in range. Returns the class count and the findings to warn about.

    Findings: F looks like it returns probabilities (the losses want logits), or answers differently to the
    same input in eval mode (a random base model). A model in training mode is switched to eval mode.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"`model` must be a torch.nn.Module returning logits (got {type(model).__name__})")
    if model.training and not isinstance(model, torch.fx.GraphModule):
        warnings.warn("`model` was in training mode; evaluate() runs it in eval mode (model.eval()) and gives it "
                      "back in training mode", stacklevel=3)
        eval_mode(model)
    dtypes = {p.dtype for p in model.parameters() if torch.is_floating_point(p)}
    wanted = sorted(map(str, dtypes))
    if dtypes & {torch.float16, torch.bfloat16}:
        raise ValueError(f"`model` computes in {sorted(map(str, dtypes))}: the attacks' steps and the 1e-5 "
                         "verification tolerance need float32 or float64; pass model.float()")
    if dtypes and x.dtype not in dtypes:
        raise ValueError(f"`x` holds {x.dtype} but `model` computes in {wanted}; convert the model to the data's "
                         f"dtype (model.to({x.dtype}), e.g. in your --model factory) or the data to the model's "
                         f"(x.to({wanted[0]}) in Python; an .npz saved as {wanted[0].removeprefix('torch.')})")
    classes, last, firsts = None, None, []
    for batch in probe_batches(x):
        out = _call(model, batch, "model", "a model", timings)
        firsts.append((len(batch), out[:1]))
        if out.dim() != 2 or out.shape[0] != len(batch) or (classes is not None and out.shape[1] != classes):
            raise ValueError(f"`model` must return logits of shape (batch, classes); for {len(batch)} input(s) it "
                             f"returned shape {tuple(out.shape)}")
        if not torch.is_floating_point(out):
            raise TypeError(f"`model` must return floating-point logits (it returned dtype {out.dtype})")
        if not bool(torch.isfinite(out).all()):
            raise ValueError(f"`model` returned NaN or infinite logits for {len(batch)} input(s); every attack and "
                             "verdict needs finite logits: check the weights and the forward")
        classes, last = int(out.shape[1]), (batch, out)
    if classes < 2:
        raise ValueError(f"`model` must return at least 2 class logits per input (got {classes})")
    low, high = int(y.min()), int(y.max())
    if low < 0 or high >= classes:
        raise ValueError(f"`y` holds labels in [{low}, {high}] but the model has {classes} classes; "
                         f"labels must lie in [0, {classes - 1}]")
    batch, out, findings = *last, []
    if _is_probability_rows(out):
        findings.append("`model` seems to return probabilities (every row ≥ 0 and summing to 1), not logits; the "
                        "attacks' losses and margins are meant for logits: return the scores before the softmax "
                        "(log-probabilities also work)")
    if _differs(out, _call(model, batch, "model", "a model", timings)):
        findings.append("`model` answers differently to the same input in eval mode (dropout with training=True, "
                        "or noise in its forward?); white-box attacks and every verdict on F assume a fixed F: "
                        "make its eval-mode forward deterministic")
    else:
        findings += _composition_findings("model", firsts)
    return classes, findings


def _composition_findings(argument: str, firsts: list[tuple[int, torch.Tensor]]) -> list[str]:
    """A warning when the first point's answer depends on the batch it came in (`firsts`: batch size and the first
    row of the answer, per probe batch): test-time batch statistics make results depend on the chunk size."""
    (_, answer), *others = firsts
    differing = [size for size, row in others if _differs(answer, row)]
    if not differing:
        return []
    return [f"`{argument}` answers the same point differently alone and inside a batch of {differing[-1]} points "
            "(batch statistics at test time: BatchNorm in training mode, test-time adaptation?); each "
            "point's result then depends on the points it is batched with, so the chunk size changes the numbers: "
            "make its answer for a point independent of the batch"]


def probe_shell(shell, model: nn.Module, x: torch.Tensor, classes: int,
                timings: dict[str, float] | None = None) -> list[str]:
    """The shell is a module around `model` (not `model` itself) returning finite probability rows (≥ 0, summing
    to 1) of shape (batch, classes) for every probe size, and leaves its input alone.

    A shell that answers differently to the same input without declaring `randomized = True` is to be treated as
    randomized (majority-of-5 verification, EOT, the stability check): returns the finding to warn about (empty
    unless it was); the caller marks it, on the suite's side, for the run.
    """
    if not isinstance(shell, nn.Module):
        raise TypeError(f"`shell` must be a torch.nn.Module (a shell) or a factory(model, **options) "
                        f"(got {type(shell).__name__})")
    if shell is model:
        raise ValueError("`shell` is the base model itself (a factory that returns its `model` argument): a shell "
                         "returns probabilities around F; return one (e.g. shells.MCNShell(model, delta)), or "
                         "pass --shell none to evaluate F alone")
    wrapped = getattr(shell, "base_model", None)
    if wrapped is not None and wrapped is not model:
        raise ValueError("`shell` wraps a different model object than `model`; build the shell around the "
                         "model you evaluate (or pass a factory and let evaluate() build it)")
    last, firsts = None, []
    for batch in probe_batches(x):
        out = _call(shell, batch, "shell", "a shell", timings)
        _check_probabilities(out, len(batch), classes)
        last = (batch, out)
        firsts.append((len(batch), out[:1]))
    batch, out = last
    if getattr(shell, "randomized", False):
        return []
    if not _differs(out, _call(shell, batch, "shell", "a shell", timings)):
        return _composition_findings("shell", firsts)
    return [f"`shell` ({type(shell).__name__}) answers differently to the same input but does not declare "
            "`randomized = True`; it is treated as randomized (majority-of-5 verification, EOT, the "
            "stability check): declare it, with a `reseed(seed)` method, to make runs repeatable"]


def _check_probabilities(out: torch.Tensor, size: int, classes: int) -> None:
    if tuple(out.shape) != (size, classes):
        raise ValueError(f"`shell` must return class probabilities of shape (batch, {classes}); for {size} "
                         f"input(s) it returned {tuple(out.shape)}")
    if not bool(torch.isfinite(out).all()):
        raise ValueError(f"`shell` returned NaN or infinite probabilities for {size} input(s); a shell must "
                         "return finite probabilities for every batch size")
    if bool((out < 0).any()):
        raise ValueError(f"`shell` must return probabilities ≥ 0; for {size} input(s) it returned "
                         f"{float(out.min()):.3g}: if it returns logits, end its forward with a softmax")
    sums = out.sum(1)
    worst = int((sums - 1).abs().argmax())
    if abs(float(sums[worst]) - 1) > SUM_TOLERANCE:
        raise ValueError(f"`shell` must return probability rows summing to 1; for {size} input(s) row {worst} "
                         f"sums to {float(sums[worst]):.4g}: normalise its scores (softmax, or divide by the row sum)")


def probe_bpda(bpda: nn.Module, model: nn.Module, x: torch.Tensor) -> None:
    """A BPDA stand-in returns finite logits of F's shape for every probe size, and leaves its input alone."""
    for batch in probe_batches(x):
        out = _call(bpda, batch, "bpda", "a stand-in")
        with torch.no_grad():
            expected = tuple(model(batch.clone()).shape)
        if tuple(out.shape) != expected:
            raise ValueError(f"`bpda` must return logits of the base model's shape {expected} for {len(batch)} "
                             f"input(s); it returned {tuple(out.shape)}")
        if not bool(torch.isfinite(out).all()):
            raise ValueError(f"`bpda` returned NaN or infinite logits for {len(batch)} input(s)")
