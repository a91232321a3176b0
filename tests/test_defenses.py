"""The literature's defenses as built-in shells: correct transforms, clear errors, end-to-end attacks."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

import robustness_eval
from robustness_eval.generative import load_generative
from robustness_eval.types import Bounds, Threat
from shells import JPEGShell, MagNetShell, capabilities
from shells.jpeg import jpeg_round_trip
from shells.registry import BUILT_IN, build_shell

DEFENSES = ["defense-gan", "defense-gan-delta", "magnet", "jpeg", "tvm", "bit-depth", "resize-pad", "diffpure"]
SMALL = {"pgd": 5, "pgd-e2e": 5, "cw-e2e-t": 5, "bpda": 3, "eot": 3, "square": 5, "noise": 3}


def test_jpeg_round_trip_matches_libjpeg_through_pillow():
    from PIL import Image

    g = torch.Generator().manual_seed(0)
    smooth = torch.nn.functional.avg_pool2d(torch.rand(4, 1, 20, 20, generator=g), 5, 1)  # 16 × 16
    smooth = torch.round(smooth * 255) / 255  # what Pillow encodes
    ours = jpeg_round_trip(smooth, 75, Bounds())
    theirs = []
    for image in smooth:
        buffer = io.BytesIO()
        Image.fromarray(np.round(image[0].numpy() * 255).astype(np.uint8), "L").save(buffer, "JPEG", quality=75)
        theirs.append(torch.from_numpy(np.asarray(Image.open(buffer), dtype=np.float32) / 255)[None])
    gap = (ours - torch.stack(theirs)).abs() * 255
    # libjpeg's integer DCT rounds differently from an exact one, which can move a quantised coefficient by
    # one step: agreement within half a grey level on average, and at 95 % of pixels within one
    within = float((gap <= 1 + 1e-4).float().mean())
    assert float(gap.mean()) < 0.5 and within >= 0.95, (float(gap.mean()), within)
    assert float((jpeg_round_trip(smooth, 100, Bounds()) - smooth).abs().max()) <= 2 / 255


def test_a_defense_with_a_trained_part_names_what_to_pass_without_a_dataset(digits_standard):
    with pytest.raises(ValueError, match=r"magnet shell needs a autoencoder.*MagNetShell\(model"):
        BUILT_IN["magnet"](digits_standard)
    with pytest.raises(ValueError, match=r"`quality` must be an integer from 1 to 100"):
        JPEGShell(digits_standard, quality=0)


@pytest.mark.parametrize("name", DEFENSES)
def test_every_defense_runs_the_battery_through_the_api_and_lists_what_it_skipped(name, digits, digits_standard):
    result = robustness_eval.evaluate(
        digits_standard, BUILT_IN[name], digits, Threat("linf", 0.1), attacks="pgd,noise,pgd-e2e,bpda,eot,square",
        budgets=SMALL, n_points=12, convergence=False, crosscheck=False, sanity_checks=False, escalation=False,
        restart_check=False)
    shell = build_shell(name, digits_standard, "linf", digits.bounds, 0.1, dataset=digits)
    ran = {rung["name"] for rung in result.attacks if rung["target"] == "shell"}
    skipped = {entry["attack"]: entry["reason"] for entry in result.extras["skipped"] if entry["target"] == "shell"}
    assert ran | set(skipped) == {"pgd", "noise", "pgd-e2e", "bpda", "eot", "square"} and not ran & set(skipped)
    assert ("pgd-e2e" in ran) == ("differentiable" in capabilities(shell))
    assert all("needs" in reason for reason in skipped.values())
    assert result.robust_accuracy["shell"] <= result.transfer_robust_accuracy["shell"]


def test_end_to_end_pgd_on_the_autoencoder_shell_breaks_points_bpda_misses(digits, digits_standard):
    shell = MagNetShell(digits_standard, load_generative(digits, "autoencoder"), digits.bounds)
    x, y = digits.x_test[:100], digits.y_test[:100]
    broken = {}
    for attack in ("pgd-e2e", "bpda"):
        result = robustness_eval.evaluate(digits_standard, shell, (x, y), Threat("linf", 0.05), attacks=attack,
                                          n_points=None, convergence=False, crosscheck=False, sanity_checks=False,
                                          escalation=False, restart_check=False)
        broken[attack] = {p["index"] for p in result.points if p["broken_by"]["shell"]}
    assert broken["pgd-e2e"] - broken["bpda"], broken
    assert len(broken["pgd-e2e"]) > len(broken["bpda"])


def test_the_zoo_ships_the_generative_models_of_the_bundled_data_with_their_hashes(digits):
    from robustness_eval.generative import shipped_generative_hash, weights_name
    from robustness_eval.zoo import SHIPPED_DIR

    for kind in ("autoencoder", "vae", "diffusion"):
        assert (SHIPPED_DIR / weights_name(digits, kind, 0)).exists() and shipped_generative_hash(digits, kind)
        load_generative(digits, kind)  # raises if the shipped weights do not match their hash
