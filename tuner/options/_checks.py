"""The values each search option takes, and the checks that normalize them or raise one line naming the flag.

Nothing here imports Optuna or Keras.
"""

from __future__ import annotations

import math
import os
import re
from typing import Any, Callable, Mapping, Sequence

from tuner.errors import CnntuneError

__all__ = ["DEVICE_DATA", "ENGINES", "KERAS_TUNER", "OBJECTIVES", "OPTUNA", "PRECISIONS", "PRECISION_ALIASES",
           "PRUNERS", "SAMPLERS", "TUNERS", "address", "bare_track", "flag", "flag_value", "gpus", "number",
           "objective", "one_of", "positive", "text"]

OPTUNA, KERAS_TUNER = "optuna", "keras-tuner"
ENGINES = (OPTUNA, KERAS_TUNER)
SAMPLERS = ("tpe", "random", "grid", "nsga2")
PRUNERS = ("none", "median", "asha", "hyperband")
TUNERS = ("random", "bayesian", "hyperband", "grid")
# --mixed-precision values and their aliases; None and "off" are float32.
PRECISIONS = ("float32", "bfloat16", "float16")
PRECISION_ALIASES = {"bf16": "bfloat16", "mixed_bfloat16": "bfloat16", "fp16": "float16", "mixed_float16": "float16",
                      "off": "float32", "none": "float32", "no": "float32", "false": "float32", "fp32": "float32"}
DEVICE_DATA = ("auto", "on", "off")
# Each objective and its direction: validation accuracy up; the second objective, the model's size or its latency
# per image, down.
OBJECTIVES = {"accuracy": "maximize", "params": "minimize", "latency": "minimize"}
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=")  # a key=value word, not a URI

def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def number(kind: type, low: float | None = None, high: float | None = None, *, below: bool = False,
            why: str = "") -> Callable[[str, Any], Any]:
    def check(name: str, value: Any) -> Any:
        if value is None:
            return None
        try:
            got = kind(value)
            if isinstance(value, bool) or (kind is int and got != float(value)) or not math.isfinite(got):
                raise ValueError
        except (TypeError, ValueError):
            raise CnntuneError(f"{flag(name)} takes a{'n integer' if kind is int else ' number'}. "
                               f"Received: {value!r}") from None
        if (low is not None and got < low) or (high is not None and (got >= high if below else got > high)):
            raise CnntuneError(f"{flag(name)} must be {why}. Received: {value}")
        return got
    return check


def one_of(values: Sequence[str], aliases: Mapping[str, str] | None = None) -> Callable[[str, Any], Any]:
    def check(name: str, value: Any) -> Any:
        if value is None:
            return None
        text = str(value).strip().lower()
        text = (aliases or {}).get(text, text)
        if text not in values:
            raise CnntuneError(f"{flag(name)} must be one of {', '.join(values)}. Received: {value!r}")
        return text
    return check


def positive(name: str, value: Any) -> float | None:
    seconds = number(float)(name, value)
    if seconds is not None and seconds <= 0:
        raise CnntuneError(f"{flag(name)} must be a positive number of seconds. Received: {value}")
    return seconds


def text(name: str, value: Any) -> Any:
    return None if value is None else str(value)


def flag_value(name: str, value: Any) -> Any:
    return None if value is None else bool(value)


def objective(name: str, value: Any) -> tuple[str, ...] | None:
    """``"accuracy"``, ``"accuracy,params"`` or ``"accuracy,latency"`` (or a sequence of names) as a tuple."""
    if value is None:
        return None
    names = tuple(s.strip() for s in (value.split(",") if isinstance(value, str) else value))
    valid = [("accuracy",), *(("accuracy", other) for other in OBJECTIVES if other != "accuracy")]
    if names not in valid:
        raise CnntuneError(f"--objective must be one of {', '.join(','.join(v) for v in valid)}. "
                           f"Received: {value!r}")
    return names


def gpus(name: str, value: Any) -> Any:
    if value is None:
        return None
    return str(value) if isinstance(value, str) else tuple(str(v) for v in value)


def address(name: str, value: Any) -> str | None:
    """``HOST:PORT`` with a port in 1..65535."""
    if value is None:
        return None
    host, sep, port = str(value).rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise CnntuneError(f"{flag(name)} needs HOST:PORT, e.g. 0.0.0.0:8000. Received: {value}")
    return str(value)


def bare_track(args: list[str]) -> list[str]:
    """Command-line words with a bare ``--track`` (last, or before another option or a ``key=value`` word) given
    MLflow's standard ``MLFLOW_TRACKING_URI``: ``--track`` alone means "the server this environment names".

    Raises:
        CnntuneError: a bare ``--track`` and no ``MLFLOW_TRACKING_URI``.
    """
    out = list(args)
    for i, word in enumerate(out):
        if word == "--":
            break
        following = out[i + 1] if i + 1 < len(out) else None
        if word == "--track" and (following is None or following.startswith("-") or _WORD.match(following)):
            uri = os.environ.get("MLFLOW_TRACKING_URI", "").strip()
            if not uri:
                raise CnntuneError("--track without a URI takes MLFLOW_TRACKING_URI, which is not set; give --track "
                                   "URI")
            out[i] = f"--track={uri}"
    return out
