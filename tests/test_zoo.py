"""Zoo training is deterministic, cached, and loaded with weights_only."""

from __future__ import annotations

import pytest
import torch

from robustness_eval.zoo import RECIPES, TrainingRecipe, build_architecture, model_hash, train


def test_training_is_deterministic_for_a_seed(digits):
    recipe = TrainingRecipe(2, 1e-3, 128, 0.1, 2)
    a = train(build_architecture(digits), digits, recipe, seed=1)
    b = train(build_architecture(digits), digits, recipe, seed=1)
    c = train(build_architecture(digits), digits, recipe, seed=2)
    assert model_hash(a) == model_hash(b) != model_hash(c)


def test_shipped_weights_load_with_their_recorded_hash_and_train_nothing(digits, digits_adversarial, private_cache):
    from robustness_eval.zoo import SHIPPED_DIR, load_model, shipped_hash, weights_name

    assert (SHIPPED_DIR / weights_name(digits, "adversarial", 0)).exists()
    assert model_hash(digits_adversarial) == shipped_hash(digits, "adversarial", 0)
    assert not list(private_cache.glob("digits-adversarial-0-*.pt"))  # loaded, not trained into the cache
    assert model_hash(load_model(digits, "adversarial")) == model_hash(digits_adversarial)


def test_unshipped_model_is_trained_once_cached_and_loaded_identically(digits, private_cache):
    from robustness_eval.zoo import load_model, shipped_hash

    assert shipped_hash(digits, "standard", 3) is None
    first = load_model(digits, "standard", seed=3)
    files = list(private_cache.glob("digits-standard-3-*.pt"))
    assert len(files) == 1
    state = torch.load(files[0], weights_only=True)
    assert set(state) == set(first.state_dict())
    assert model_hash(load_model(digits, "standard", seed=3)) == model_hash(first)


def test_corrupted_shipped_weights_are_refused(digits, tmp_path, monkeypatch):
    import shutil

    from robustness_eval import zoo

    copy = tmp_path / "zoo_weights"
    shutil.copytree(zoo.SHIPPED_DIR, copy)
    name = zoo.weights_name(digits, "standard", 0)
    state = torch.load(copy / name, weights_only=True)
    first = next(iter(state))
    state[first] = state[first] + 1e-3
    torch.save(state, copy / name)
    monkeypatch.setattr(zoo, "SHIPPED_DIR", copy)
    monkeypatch.setattr(zoo, "SHIPPED_INDEX", copy / "hashes.json")
    with pytest.raises(RuntimeError, match="do not match their recorded hash"):
        zoo.load_model(digits, "standard")


def test_zoo_models_are_accurate(digits, digits_standard, digits_adversarial):
    from robustness_eval.zoo import accuracy

    assert RECIPES[("digits", "adversarial")].adv_steps > 0
    assert accuracy(digits_standard, digits.x_test, digits.y_test) > 0.95
    assert accuracy(digits_adversarial, digits.x_test, digits.y_test) > 0.9
