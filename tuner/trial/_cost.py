"""What training a model costs, as facts recorded with each trial: its multiply-accumulates and its activations
per image.

The search strategy compares trials by cost (``tuner.searching``: grow the best trial while it costs less than the
costliest baseline). Seconds measured on a busy machine vary from run to run, so a decision made on them does not
repeat; these counts are properties of the model alone:

* ``multiply_adds``: the arithmetic of the layers with a ``kernel``, which hold nearly all of a CNN's: a convolution
  costs its kernel's size at every output position (``kh * kw * in * out * H * W``, depthwise ones alike), a dense
  layer its kernel's size (``in * out``, per position of an input with more axes);
* ``activations``: the values every layer writes (its output's size): normalization, activation, pooling and
  augmentation layers do little arithmetic per value but move every one of them, which on small models is most of
  the time.

Nothing here imports Keras.
"""

from __future__ import annotations

import math

__all__ = ["activations", "all_layers", "multiply_adds"]


def all_layers(layer) -> list:
    """``layer`` and every layer nested in it (models inside models)."""
    out = [layer]
    for child in getattr(layer, "layers", None) or []:
        out += all_layers(child)
    return out


def multiply_adds(model) -> int | None:
    """Multiply-accumulates of one forward pass of one image through ``model``'s kernels; ``None`` when a layer's
    shapes cannot be read (a model not built on a known input shape)."""
    total = 0
    for layer in all_layers(model):
        kernel = getattr(layer, "kernel", None)
        if kernel is None or getattr(layer, "layers", None):
            continue
        try:
            positions = math.prod(int(d) for d in layer.output.shape[1:-1])
        except (AttributeError, ValueError, TypeError):
            return None
        total += math.prod(int(d) for d in kernel.shape) * positions
    return int(total)


def activations(model) -> int | None:
    """The values ``model``'s layers write in one forward pass of one image (the sum of their outputs' sizes);
    ``None`` when a layer's output shape cannot be read."""
    total = 0
    for layer in all_layers(model):
        if getattr(layer, "layers", None):
            continue  # a model's layers are counted one by one
        try:
            total += math.prod(int(d) for d in layer.output.shape[1:])
        except (AttributeError, ValueError, TypeError):
            return None
    return int(total)
