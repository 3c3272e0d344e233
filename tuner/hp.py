"""The hyperparameter vocabulary shared by every search space and both engines.

A search space is written once against the Keras Tuner ``HyperParameters`` vocabulary
(``Choice``, ``Int``, ``Float``, ``Boolean``, ``Fixed`` and ``conditional_scope``). The classes here
implement that vocabulary without importing Keras, so that listing spaces and validating pins stays fast:

* ``Defaults``: every choice takes its default, or a value given in ``values`` (baselines, replays, export).
* ``Describe``: records every choice point, conditional ones included, to list a space or build a grid.
* ``OptunaHP`` (in ``tuner.searching.engines``): maps each call onto ``trial.suggest_*``.

Under Keras Tuner a space receives Keras Tuner's own ``HyperParameters``, which has the same methods.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping

from tuner.errors import SpaceError

__all__ = [
    "Boolean",
    "Choice",
    "Condition",
    "Defaults",
    "Describe",
    "Fixed",
    "Float",
    "HyperParameters",
    "Int",
    "Param",
    "coerce_value",
    "describe",
    "format_value",
    "resolve",
    "same_value",
]

_TRUE = {"true", "1", "yes", "on", "y"}
_FALSE = {"false", "0", "no", "off", "n"}


@dataclass(frozen=True)
class Condition:
    """The parent hyperparameter ``name`` must take one of ``values`` for a child to be active."""

    name: str
    values: tuple


@dataclass(frozen=True)
class Param:
    """One choice point of a space."""

    name: str
    default: Any
    conditions: tuple[Condition, ...] = field(default=(), kw_only=True)

    kind = "param"

    def contains(self, value: Any) -> bool:
        raise NotImplementedError

    def grid(self) -> list | None:
        """The finite list of values, or ``None`` for a continuous range."""
        return None

    def summary(self) -> str:
        raise NotImplementedError

    @property
    def is_tunable(self) -> bool:
        return True


@dataclass(frozen=True)
class Choice(Param):
    values: tuple = ()
    kind = "choice"

    def contains(self, value: Any) -> bool:
        return any(same_value(value, v) for v in self.values)

    def grid(self) -> list:
        return list(self.values)

    def summary(self) -> str:
        return "{" + ", ".join(format_value(v) for v in self.values) + "}"

    @property
    def is_tunable(self) -> bool:
        return len(self.values) > 1


@dataclass(frozen=True)
class Int(Param):
    min_value: int = 0
    max_value: int = 0
    step: int | None = None
    sampling: str = "linear"
    kind = "int"

    def contains(self, value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, int):
            return False
        if not self.min_value <= value <= self.max_value:
            return False
        return self.step is None or (value - self.min_value) % self.step == 0

    def grid(self) -> list:
        return list(range(self.min_value, self.max_value + 1, self.step or 1))

    def summary(self) -> str:
        step = f" step {self.step}" if self.step not in (None, 1) else ""
        log = " log" if self.sampling == "log" else ""
        return f"{self.min_value}..{self.max_value}{step}{log}"


@dataclass(frozen=True)
class Float(Param):
    min_value: float = 0.0
    max_value: float = 1.0
    step: float | None = None
    sampling: str = "linear"
    kind = "float"

    def contains(self, value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        return self.min_value - 1e-12 <= float(value) <= self.max_value + 1e-12

    def grid(self) -> list | None:
        if self.step is None:
            return None
        n = int(round((self.max_value - self.min_value) / self.step))
        return [round(self.min_value + i * self.step, 12) for i in range(n + 1)]

    def summary(self) -> str:
        step = f" step {format_value(self.step)}" if self.step else ""
        log = " log" if self.sampling == "log" else ""
        return f"{format_value(self.min_value)}..{format_value(self.max_value)}{step}{log}"


@dataclass(frozen=True)
class Boolean(Param):
    kind = "bool"

    def contains(self, value: Any) -> bool:
        return isinstance(value, bool)

    def grid(self) -> list:
        return [False, True]

    def summary(self) -> str:
        return "{false, true}"


@dataclass(frozen=True)
class Fixed(Param):
    kind = "fixed"

    def contains(self, value: Any) -> bool:
        # A pin overrides a fixed value of its type (``epochs=2``); a positive one stays positive (``epochs=0``: no).
        if isinstance(self.default, bool):
            return isinstance(value, bool)
        if isinstance(self.default, (int, float)):
            number = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            return number and (value > 0 or self.default <= 0)
        return isinstance(value, type(self.default))

    def grid(self) -> list:
        return [self.default]

    def summary(self) -> str:
        return f"fixed {format_value(self.default)}"

    @property
    def is_tunable(self) -> bool:
        return False


def same_value(a: Any, b: Any) -> bool:
    """Whether two choice values are the same: floats within rounding, and ``True`` never equal to ``1``."""
    if isinstance(a, bool) != isinstance(b, bool):
        return False
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)
    return a == b


def format_value(v: Any) -> str:
    """A choice value as the command line writes it (``true``, ``none``, ``0.001``)."""
    if v is None:
        return "none"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def _parse_scalar(raw: str) -> Any:
    text = raw.strip()
    low = text.lower()
    if low in ("none", "null"):
        return None
    if low in ("true", "false"):
        return low == "true"
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


def coerce_value(param: Param, raw: Any) -> Any:
    """Turns a command-line string (or a Python value) into a valid value of ``param``.

    Args:
        param: the choice point.
        raw: a string such as ``"106"``, ``"true"``, ``"adam"``, or an already typed value.

    Returns:
        The typed value.

    Raises:
        SpaceError: the value has the wrong type or lies outside the choice point.
    """
    expected = f"expected {param.summary()}"
    if isinstance(param, Boolean) or (isinstance(param, Fixed) and isinstance(param.default, bool)):
        if isinstance(raw, bool):
            value = raw
        elif str(raw).strip().lower() in _TRUE:
            value = True
        elif str(raw).strip().lower() in _FALSE:
            value = False
        else:
            raise SpaceError(f"{param.name}={raw!r} is not a boolean; {expected}")
    elif isinstance(param, Int) or (
        isinstance(param, Fixed) and isinstance(param.default, int) and not isinstance(param.default, bool)
    ):
        try:
            value = raw if isinstance(raw, int) and not isinstance(raw, bool) else int(str(raw).strip())
        except ValueError:
            raise SpaceError(f"{param.name}={raw!r} is not an integer; {expected}") from None
    elif isinstance(param, Float) or (isinstance(param, Fixed) and isinstance(param.default, float)):
        try:
            value = float(raw) if not isinstance(raw, bool) else None
        except (TypeError, ValueError):
            value = None
        if value is None or not math.isfinite(value):
            raise SpaceError(f"{param.name}={raw!r} is not a number; {expected}")
    elif isinstance(param, Choice):
        candidate = _parse_scalar(raw) if isinstance(raw, str) else raw
        matches = [v for v in param.values
                   if same_value(candidate, v) or (isinstance(raw, str) and format_value(v) == raw)]
        if not matches:
            raise SpaceError(f"{param.name}={raw!r} is not one of the choices; {expected}")
        value = matches[0]
    else:
        value = _parse_scalar(raw) if isinstance(raw, str) else raw
    if not param.contains(value):
        fixed = isinstance(param, Fixed) and isinstance(value, (int, float))
        raise SpaceError(f"{param.name}={raw!r} is out of range" + (f": it must be above 0 (the space fixes "
                         f"{format_value(param.default)})" if fixed else f"; {expected}"))
    return value


class HyperParameters:
    """The Keras Tuner vocabulary; subclasses decide which value each declared choice takes.

    Declarations inside an inactive ``conditional_scope`` return ``None`` and are not sampled,
    exactly as under Keras Tuner.
    """

    def __init__(self) -> None:
        self.space: dict[str, Param] = {}
        self.values: dict[str, Any] = {}
        self._scopes: list[Condition] = []

    # -- the vocabulary -------------------------------------------------------------------------
    def Choice(self, name, values, ordered=None, default=None, parent_name=None, parent_values=None):
        values = tuple(values)
        if not values:
            raise ValueError(f"Choice needs at least one value. Received: name={name}, values={values}")
        default = values[0] if default is None else default
        if not any(same_value(default, v) for v in values):
            raise ValueError(f"The default must be one of the values. Received: name={name}, default={default}")
        return self._declare(Choice(name, default, values=values, conditions=self._conds(parent_name, parent_values)))

    def Int(self, name, min_value, max_value, step=None, sampling="linear", default=None, parent_name=None,
            parent_values=None):
        if min_value > max_value:
            raise ValueError(f"min_value must be <= max_value. Received: name={name}, {min_value} > {max_value}")
        default = min_value if default is None else default
        param = Int(name, int(default), min_value=int(min_value), max_value=int(max_value), step=step,
                    sampling=sampling, conditions=self._conds(parent_name, parent_values))
        return self._declare(param)

    def Float(self, name, min_value, max_value, step=None, sampling="linear", default=None, parent_name=None,
              parent_values=None):
        if min_value > max_value:
            raise ValueError(f"min_value must be <= max_value. Received: name={name}, {min_value} > {max_value}")
        default = min_value if default is None else default
        param = Float(name, float(default), min_value=float(min_value), max_value=float(max_value), step=step,
                      sampling=sampling, conditions=self._conds(parent_name, parent_values))
        return self._declare(param)

    def Boolean(self, name, default=False, parent_name=None, parent_values=None):
        return self._declare(Boolean(name, bool(default), conditions=self._conds(parent_name, parent_values)))

    def Fixed(self, name, value, parent_name=None, parent_values=None):
        return self._declare(Fixed(name, value, conditions=self._conds(parent_name, parent_values)))

    @contextlib.contextmanager
    def conditional_scope(self, parent_name: str, parent_values) -> Iterator[None]:
        """Hyperparameters declared inside exist only when ``parent_name`` takes one of ``parent_values``."""
        if not isinstance(parent_values, (list, tuple)):
            parent_values = [parent_values]
        if parent_name not in self.space:
            raise ValueError(f"conditional_scope needs a declared parent. Received: parent_name={parent_name}")
        self._scopes.append(Condition(parent_name, tuple(parent_values)))
        try:
            yield
        finally:
            self._scopes.pop()

    def get(self, name: str) -> Any:
        if name not in self.values:
            raise KeyError(f"{name} is not an active hyperparameter")
        return self.values[name]

    def is_active(self, name_or_param) -> bool:
        param = self.space[name_or_param] if isinstance(name_or_param, str) else name_or_param
        return all(
            c.name in self.values and any(same_value(self.values[c.name], v) for v in c.values)
            for c in param.conditions
        )

    # -- machinery ------------------------------------------------------------------------------
    def _conds(self, parent_name, parent_values) -> tuple[Condition, ...]:
        conds = list(self._scopes)
        if parent_name is not None:
            if not isinstance(parent_values, (list, tuple)):
                parent_values = [parent_values]
            conds.append(Condition(parent_name, tuple(parent_values)))
        return tuple(conds)

    def _declare(self, param: Param) -> Any:
        known = self.space.get(param.name)
        if known is not None and known != param:
            raise ValueError(f"Hyperparameter {param.name!r} is declared twice with different definitions.")
        self.space[param.name] = param
        if not self.is_active(param):
            return None
        if param.name not in self.values:
            self.values[param.name] = self._value(param)
        return self.values[param.name]

    def _value(self, param: Param) -> Any:
        return param.default


class Defaults(HyperParameters):
    """Every choice takes its default unless ``values`` gives one: ``declare(Defaults())`` is the study's config."""

    def __init__(self, values: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        self._given = dict(values or {})

    def _value(self, param: Param) -> Any:
        return self._given.get(param.name, param.default)


class Describe(HyperParameters):
    """Records every choice point of a space; every conditional scope counts as active."""

    def is_active(self, name_or_param) -> bool:
        return True


def describe(space) -> dict[str, Param]:
    """All choice points of a space module, in declaration order."""
    hp = Describe()
    space.declare(hp)
    return dict(hp.space)


def resolve(space, hp) -> dict[str, Any]:
    """Runs ``space.declare(hp)`` and returns the values of the active choice points.

    Works with this module's classes and with Keras Tuner's ``HyperParameters``.
    """
    space.declare(hp)
    return {name: value for name, value in hp.values.items() if hp.is_active(name)}
