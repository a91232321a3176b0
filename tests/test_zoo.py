"""Zoo training is deterministic, cached, and loaded with weights_only."""

from __future__ import annotations

import torch

from robustness_eval.zoo import RECIPES, TrainingRecipe, build_architecture, model_hash, train


def test_training_is_deterministic_for_a_seed(digits):
    recipe = TrainingRecipe(2, 1e-3, 128, 0.1, 2)
    a = train(build_architecture(digits), digits, recipe, seed=1)
    b = train(build_architecture(digits), digits, recipe, seed=1)
    c = train(build_architecture(digits), digits, recipe, seed=2)
    assert model_hash(a) == model_hash(b) != model_hash(c)


def test_cached_model_loads_identically(digits, digits_adversarial, private_cache):
    from robustness_eval.zoo import load_model

    files = list(private_cache.glob("digits-adversarial-*.pt"))
    assert len(files) == 1
    state = torch.load(files[0], weights_only=True)
    assert set(state) == set(digits_adversarial.state_dict())
    assert model_hash(load_model(digits, "adversarial")) == model_hash(digits_adversarial)


def test_zoo_models_are_accurate(digits, digits_standard, digits_adversarial):
    from robustness_eval.zoo import accuracy

    assert RECIPES[("digits", "adversarial")].adv_steps > 0
    assert accuracy(digits_standard, digits.x_test, digits.y_test) > 0.95
    assert accuracy(digits_adversarial, digits.x_test, digits.y_test) > 0.9
