"""Write `examples/digits-test.npz`: the digits test points as a user's own data file (x, y, lower, upper)."""

from pathlib import Path

import numpy as np

from robustness_eval.data import load_digits

if __name__ == "__main__":
    data = load_digits()
    path = Path(__file__).resolve().parent / "digits-test.npz"
    np.savez_compressed(path, x=data.x_test.numpy(), y=data.y_test.numpy(), lower=0.0, upper=1.0)
    print(f"wrote {path}: {len(data.y_test)} points")
