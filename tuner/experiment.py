"""``key=value`` words describe an experiment: the space, the data, and pinned hyperparameters.

``space=basenet data=cub200 data_dir=PATH image_size=32 epochs=2 conv1_filters=6`` becomes an ``Experiment``.
Reserved keys pick the space and the data; every other key pins a choice point of the space (the trial uses
that value and the sampler does not vary it). ``epochs`` and ``batch_size`` are choice points of every space.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Iterable, Mapping

from search_spaces import get_space, space_names
from tuner.errors import SpaceError
from tuner.hp import Defaults, Param, coerce_value, describe, format_value, resolve, same_value

__all__ = [
    "DATA_KEYS",
    "OPTION_KEYS",
    "RESERVED_KEYS",
    "DataConfig",
    "Experiment",
    "from_meta",
    "grid_values",
    "load_data",
    "parse_words",
    "split_words",
    "trial_config",
    "tunable",
    "validate_pins",
]

DATA_KEYS = ("data", "data_dir", "image_size", "classes")
# Run-level options a space reads through ``ModelSpec.options`` (``weights=imagenet|none|PATH`` for a backbone).
OPTION_KEYS = ("weights",)
RESERVED_KEYS = ("space", *DATA_KEYS, *OPTION_KEYS, "epochs", "batch_size")


@dataclass(frozen=True)
class DataConfig:
    """Which dataset a study trains on."""

    name: str
    data_dir: str | None = None
    image_size: int | None = None
    classes: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def label(self) -> str:
        extras = [f"{k}={v}" for k, v in (("image_size", self.image_size), ("classes", self.classes)) if v]
        return " ".join([self.name, *extras])


@dataclass(frozen=True)
class Experiment:
    """A space, its data and the pinned hyperparameters."""

    space_name: str
    space: ModuleType = field(repr=False)
    data: DataConfig
    pins: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)


def _as_int(key: str, raw: str, minimum: int) -> int:
    try:
        value = int(str(raw).strip())
    except ValueError:
        raise SpaceError(f"{key}={raw!r} is not an integer") from None
    if value < minimum:
        raise SpaceError(f"{key}={raw!r} must be >= {minimum}")
    return value


def split_words(words: Iterable[str]) -> dict[str, str]:
    """``["a=1", "b=x"]`` -> ``{"a": "1", "b": "x"}``; a word without ``=`` or a repeated key is an error."""
    out: dict[str, str] = {}
    for word in words:
        key, sep, value = word.partition("=")
        key = key.strip()
        if not sep or not key:
            raise SpaceError(f"expected key=value, got {word!r} (for example space=basenet epochs=2)")
        if key in out:
            raise SpaceError(f"{key}= is given twice")
        out[key] = value
    return out


def validate_pins(space: ModuleType, raw_pins: Mapping[str, Any], space_name: str) -> dict[str, Any]:
    """Checks and types pinned values against the space's choice points.

    Raises:
        SpaceError: an unknown key (the message lists the valid ones) or a value of the wrong type.
    """
    params: dict[str, Param] = describe(space)
    valid = ", ".join([k for k in RESERVED_KEYS if k not in ("epochs", "batch_size")] + list(params))
    pins: dict[str, Any] = {}
    for key, raw in raw_pins.items():
        if key not in params:
            raise SpaceError(f"unknown key {key!r} for space {space_name}; valid keys: {valid}")
        try:
            pins[key] = coerce_value(params[key], raw)
        except SpaceError as exc:
            raise SpaceError(f"{exc} (valid keys of space {space_name}: {valid})") from None
    for key in pins:
        _check_can_be_active(params, pins, key, space_name)
    return pins


def _fixed_value(param: Param, pins: Mapping[str, Any]) -> tuple[bool, Any]:
    """``(True, value)`` when a choice point cannot vary: pinned, ``Fixed``, or a one-value ``Choice``."""
    if param.name in pins:
        return True, pins[param.name]
    if not param.is_tunable:
        return True, param.default
    return False, None


def _check_can_be_active(params: Mapping[str, Param], pins: Mapping[str, Any], key: str, space_name: str,
                         origin: str | None = None) -> None:
    """Raises when the pinned ``key`` can never be active, given the other pins and the space's fixed values.

    A pin on an inactive choice point would be silently ignored (``conv3_filters=106`` with ``body=basenet``
    trains a net without a third conv), so the user would believe something was tested that never was.

    Args:
        params: the space's choice points.
        pins: the typed pins.
        key: the choice point to check.
        space_name: for the message.
        origin: the pin the check started from, when ``key`` is one of its conditional parents.

    Raises:
        SpaceError: one line naming the pin and the pin or fixed value it contradicts.
    """
    origin = origin or key
    pin = f"{origin}={format_value(pins[origin])}"
    for cond in params[key].conditions:
        parent = params.get(cond.name)
        if parent is None or cond.name == origin:  # a cycle cannot come from declare(); do not loop on one
            continue
        fixed, value = _fixed_value(parent, pins)
        allowed = ", ".join(format_value(v) for v in cond.values)
        if fixed and not any(same_value(value, v) for v in cond.values):
            source = "pinned" if cond.name in pins else "fixed by the space"
            raise SpaceError(
                f"{pin} contradicts {cond.name}={format_value(value)} ({source}): {key} exists only when {cond.name} "
                f"is one of [{allowed}] in space {space_name}; drop {origin}= or pin {cond.name} to one of those"
            )
        if not fixed and not any(parent.contains(v) for v in cond.values):
            raise SpaceError(f"{pin} can never be active in space {space_name}: {cond.name} never takes one of "
                             f"[{allowed}]; drop {origin}=")
        # The parent may itself be conditional (and ruled out by another pin): follow the chain up.
        _check_can_be_active(params, pins, cond.name, space_name, origin)


def parse_words(words: Iterable[str], *, default_space: str | None = None,
                default_data: Mapping[str, Any] | None = None,
                default_pins: Mapping[str, Any] | None = None,
                default_options: Mapping[str, Any] | None = None) -> Experiment:
    """Turns ``key=value`` words into an ``Experiment``.

    Args:
        words: the words, e.g. ``["space=basenet", "data=cub200", "epochs=2"]``.
        default_space: the space when no ``space=`` is given (e.g. the stored space of a study being resumed).
        default_data: data settings to start from (e.g. a resumed study's), overridden by the words.
        default_pins: pins to start from (a resumed study's), overridden by the words.
        default_options: run options to start from (a resumed study's ``weights``), overridden by the words.

    Raises:
        SpaceError: unknown space or key, a value of the wrong type, no space at all.
    """
    kv = split_words(words)
    space_name = kv.pop("space", None) or default_space
    if not space_name:
        raise SpaceError(f"say which space to search with space=NAME; valid: {', '.join(space_names())}")
    space = get_space(space_name)
    base = dict(default_data or {})
    given_dir = kv.pop("data_dir", None)
    data = DataConfig(
        name=kv.pop("data", None) or base.get("name") or space.DEFAULT_DATA,
        # A path typed on the command line is resolved from where it was typed, and stored that way, so that a
        # study resumed, re-evaluated or joined by a worker from another folder finds the same files.
        data_dir=_absolute(given_dir) if given_dir else base.get("data_dir"),
        image_size=_as_int("image_size", kv.pop("image_size"), 8) if "image_size" in kv else base.get("image_size"),
        classes=_as_int("classes", kv.pop("classes"), 2) if "classes" in kv else base.get("classes"),
    )
    from tuner.data import DATASETS  # the data package imports NumPy and Pillow: only when words are parsed

    if data.name not in DATASETS:
        raise SpaceError(f"unknown data {data.name!r}; valid: {', '.join(DATASETS)}")
    options = _options(space, {**dict(default_options or {}), **{k: kv.pop(k) for k in OPTION_KEYS if k in kv}},
                       space_name)
    pins = validate_pins(space, {**dict(default_pins or {}), **kv}, space.NAME)
    return Experiment(space_name=space.NAME, space=space, data=data, pins=pins, options=options)


def from_meta(meta: Mapping[str, Any], words: Iterable[str] = ()) -> Experiment:
    """The experiment a study was created with (its stored space, data, pins and options), then ``words`` on top."""
    return parse_words(words, default_space=meta.get("space"), default_data=meta.get("data"),
                       default_pins=meta.get("pins"), default_options=meta.get("options"))


def load_data(exp: Experiment, skip_bad_images: bool = False):
    """The experiment's ``Dataset`` (loaded once per process).

    Raises:
        DataError: missing, empty or unreadable data.
    """
    from tuner.data import load_dataset

    return load_dataset(exp.data.name, data_dir=exp.data.data_dir, image_size=exp.data.image_size,
                        classes=exp.data.classes, skip_bad_images=skip_bad_images)


def _absolute(path: str) -> str:
    return str(Path(path).expanduser().absolute())


def _options(space: ModuleType, given: dict[str, Any], space_name: str) -> dict[str, Any]:
    """Run options checked (and defaulted) by the space's ``check_options``; a space without it takes none."""
    check = getattr(space, "check_options", None)
    if check is None:
        if given:
            raise SpaceError(f"space {space_name} takes no {', '.join(f'{k}=' for k in given)} (only spaces with a "
                             f"pretrained backbone do, e.g. transfer)")
        return {}
    return dict(check(given))


def tunable(space, pins: Mapping[str, Any]) -> dict[str, Param]:
    """Choice points the sampler may vary: tunable and not pinned."""
    return {n: p for n, p in describe(space).items() if p.is_tunable and n not in pins}


def trial_config(space, pins: Mapping[str, Any], params: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The full resolved configuration for ``params`` over defaults, with pins winning."""
    return resolve(space, Defaults({**dict(params or {}), **dict(pins)}))


def grid_values(space, pins: Mapping[str, Any], option: str = "--sampler grid") -> dict[str, list]:
    """Every value of each searched choice point, for a grid search.

    Raises:
        SpaceError: a continuous choice point (no step), which a grid cannot walk.
    """
    grid: dict[str, list] = {}
    for pname, param in tunable(space, pins).items():
        values = param.grid()
        if values is None:
            alternative = "--sampler tpe" if option.startswith("--sampler") else "--tuner random"
            raise SpaceError(
                f"{option} needs a finite space, but {pname} is continuous ({param.summary()}); "
                f"pin it ({pname}=VALUE) or use {alternative}"
            )
        grid[pname] = values
    return grid
