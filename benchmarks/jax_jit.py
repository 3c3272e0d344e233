"""The final model on JAX, eager (Keras's own choice for models with random zoom or rotation) and compiled
(cnntune's ``tuner.trial.apply_jit``): seconds for the first batches (compilation included) and images per second.

    KERAS_BACKEND=jax .venv/bin/python benchmarks/jax_jit.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def measure(jit: bool | None, batches: int = 30, batch: int = 32) -> tuple[float, float]:
    import keras
    import numpy as np

    from search_spaces import get_space
    from tuner.trial import apply_jit
    from tuner.hp import Defaults, resolve
    from tuner.spec import ModelSpec

    keras.backend.clear_session()
    space = get_space("improved")
    model = space.build(resolve(space, Defaults({})), ModelSpec(input_shape=(32, 32, 3), num_classes=25))
    apply_jit(model, jit)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (batch * batches, 32, 32, 3), dtype=np.uint8)
    y = rng.integers(0, 25, (batch * batches,))
    start = time.perf_counter()
    model.fit(x[: 3 * batch], y[: 3 * batch], batch_size=batch, epochs=1, verbose=0)
    first = time.perf_counter() - start
    start = time.perf_counter()
    model.fit(x, y, batch_size=batch, epochs=1, verbose=0)
    return first, len(x) / (time.perf_counter() - start)


def main() -> None:
    import keras

    print(f"backend {keras.backend.backend()}, final model (improved defaults), 25 classes, batch 32")
    for label, jit in (("eager (Keras's auto)", False), ("compiled (cnntune's auto)", None)):
        first, rate = measure(jit)
        print(f"  {label:<26} first 3 batches {first:5.1f} s, {rate:6.0f} images/s")


if __name__ == "__main__":
    main()
