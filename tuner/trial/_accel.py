"""How trials use the accelerator: mixed precision, JIT compilation, and several trials sharing one GPU.

``--mixed-precision bfloat16|float16`` trains under Keras's ``mixed_bfloat16`` / ``mixed_float16`` dtype policy
(variables in float32, computations in the lower precision; the spaces keep their softmax in float32, and under
float16 ``compile`` wraps the optimizer in a loss-scale optimizer). ``--jit`` / ``--no-jit`` sets the model's
``jit_compile`` (XLA on TensorFlow and JAX, ``torch.compile`` on PyTorch); unset, Keras decides (``"auto"``: XLA
on a TensorFlow GPU and on JAX, eager on PyTorch). Both are stored with the study's settings and recorded on each
trial, since they change what a trial measures.

``--trials-per-gpu K`` runs K worker processes per GPU; ``share_gpu_env`` is what each of them gets so that none
takes the whole GPU's memory at start (TensorFlow and JAX otherwise reserve most of it).

Nothing here imports Keras when the module loads.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

from tuner.options import SearchOptions, option_value
from tuner.trial._cost import all_layers

__all__ = ["POLICIES", "accel_of", "apply_jit", "check_precision", "precision_policy", "share_gpu_env"]

# --mixed-precision value (``tuner.options.PRECISIONS``) -> Keras dtype policy.
POLICIES = {"float32": "float32", "bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}

# Share of a GPU's memory that K processes may take together; the rest is left to the driver and other processes.
GPU_MEMORY_SHARE = 0.9


def check_precision(value: str | None) -> str:
    """``--mixed-precision``'s value as one of ``tuner.options.PRECISIONS`` (``None`` and ``off`` are ``float32``).

    Raises:
        CnntuneError: anything else.
    """
    return option_value("mixed_precision", value) or "float32"


def accel_of(options: SearchOptions | None) -> dict[str, Any]:
    """The runner keywords (``precision``, ``jit``, ``device_data``) of a search's options; the defaults are left
    out, so that a runner that does not take them still works for ordinary studies."""
    out: dict[str, Any] = {}
    if options is None:
        return out
    precision = check_precision(options.mixed_precision)
    if precision != "float32":
        out["precision"] = precision
    if options.jit is not None:
        out["jit"] = bool(options.jit)
    if options.device_data not in (None, "auto"):
        out["device_data"] = str(options.device_data)
    return out


@contextmanager
def precision_policy(precision: str = "float32") -> Iterator[None]:
    """Keras's global dtype policy set to ``precision``'s for the models built inside; the previous policy is
    restored after, so that nothing else in the process trains or builds in mixed precision by accident."""
    precision = check_precision(precision)
    if precision == "float32":  # the default: the process's policy is left alone
        yield
        return
    import keras

    before = keras.config.dtype_policy()
    keras.config.set_dtype_policy(POLICIES[precision])
    try:
        yield
    finally:
        keras.config.set_dtype_policy(before)


# Layers Keras marks ``supports_jit = False`` for every backend (TensorFlow's image-transform op has no XLA kernel)
# that are plain JAX operations on the JAX backend. Left eager there, a model with random zoom or rotation runs op by
# op: the final model trained at 73 images/s on 2 CPU cores and needed 21 s for its first 3 batches, against 109
# images/s and 3.6 s compiled (BENCHMARKS.md, "JIT on JAX").
JAX_COMPILABLE = ("RandomZoom", "RandomRotation")


def apply_jit(model, jit: bool | None) -> bool:
    """Sets ``model.jit_compile``: ``jit`` when given (Keras falls back to ``False``, with a warning, for a model
    whose layers cannot be compiled), else Keras's ``"auto"``, which on the JAX backend now also compiles models
    with the layers of ``JAX_COMPILABLE``. Returns the value the model trains with."""
    import keras

    if keras.backend.backend() == "jax" and jit is not False:
        layers = all_layers(model)
        for layer in layers:
            if type(layer).__name__ in JAX_COMPILABLE:
                layer.supports_jit = True
        if jit is None and all(getattr(layer, "supports_jit", True) for layer in layers):
            model.jit_compile = True  # what "auto" resolves to on JAX for a model whose layers all compile
    if jit is not None:
        model.jit_compile = bool(jit)
    return bool(model.jit_compile)


def share_gpu_env(per_gpu: int, environ: dict[str, str] | None = None) -> dict[str, str]:
    """Environment variables for one of ``per_gpu`` worker processes on one GPU, for every backend (a worker picks
    its backend from ``KERAS_BACKEND``): TensorFlow allocates as it grows instead of reserving the GPU, JAX
    preallocates its share (``GPU_MEMORY_SHARE / per_gpu``) rather than 75% of the GPU, and PyTorch's allocator uses
    expandable segments (less fragmentation between trials of different sizes). A value already set in
    ``environ`` is kept. One process per GPU gets nothing.
    """
    if per_gpu <= 1:
        return {}
    environ = environ or {}
    wanted = {
        "TF_FORCE_GPU_ALLOW_GROWTH": "true",
        "XLA_PYTHON_CLIENT_MEM_FRACTION": f"{int(100 * GPU_MEMORY_SHARE / per_gpu) / 100:.2f}",
        "PYTORCH_CUDA_ALLOC_CONF": "expandable_segments:True",
    }
    return {key: value for key, value in wanted.items() if key not in environ}
