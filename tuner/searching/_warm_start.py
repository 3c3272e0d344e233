"""Start a search from the study: the first searched trials perturb the hand-chosen configuration.

A sampler's start-up trials are usually drawn uniformly over the whole space; in a space like ``improved`` many of
those are dead on arrival (SGD at 1e-4, zoom 1.2 on tiny birds, a 5-3-3-3 stack) and cost minutes of a short budget.
Every space's defaults are the study's hand-chosen configuration, a known good point, so cnntune's start-up trials
are *perturbations* of it: each choice point keeps its default, or with probability ``rate`` takes another value
(a neighbouring one for numbers, on their log scale where they are sampled that way). The sampler's model takes over
from there. Pure Python; seeded, so a search with the same seed starts from the same configurations.

The study reached its hand-chosen configuration in steps (normalization, augmentation, a deeper body, BatchNorm,
...), each tuned on its own data; on other data some steps may not pay for themselves. With ``mix`` (the study's
other hand-chosen configurations, its baselines), each choice point first takes, with probability ``MIX``, the value
of one of them instead of the default: the start-up trials are then crossovers of the study's configurations (the
final model with BaseNet's body, without augmentation, ...), perturbed as above. Every value in them was chosen by
hand for some model, so none is dead on arrival, and a cheaper body is among the first things tried.

The study's configurations are also a path: from its first (BaseNet) to its last (the hand-chosen one), each numeric
choice it moved (a width from 16 to 56 filters, the epochs from 15 to 20) moved in a direction that paid. Hand tuning
stops somewhere along that path; the next step a person would try is one more step the same way. So with ``mix``,
the first warm starts are *the study continued* (``study_trend``): the hand-chosen configuration with each such
choice moved once more by the same step (the same ratio on a log scale), clipped to its range, every other choice
as chosen by hand; and, for each choice point a space names in ``STRUCTURE`` (the body), the same on each of the
study's structures, the first (cheapest) first. The crossovers follow.

A person who continued the study would not stop there either: they would keep the best model so far and try changes
to it. ``climb`` does that: once the study continued has run, a share of the searched trials are perturbations of
the best trial so far (the same moves, centred on its values instead of the defaults), taking turns with the
crossovers and then with the sampler, so the search keeps improving on what already works while the rest explores.

Nor would they leave budget unspent: while the best model so far trains faster than the hand-chosen one, they would
make it bigger and train it longer. ``grow`` does that: the best trial with each choice point a space names in
``SCALE`` (its widths and its epochs) doubled, clipped to its range; the study continued on BaseNet's body trains
3-10 times faster than the study's final model, so this spends the final model's budget on the model that already
beat it (the engine grows while the best trial trains faster than the longest baseline).

Nor would they train it the way they trained models years ago: a space that names an ``UPGRADE`` (the ``modern``
space: a cosine schedule, label smoothing, translations, CutMix) gets it tried on the trial growth starts from
(``upgrade``), before that trial grows; what it does not help is left behind, as any trial that scores lower.
"""

from __future__ import annotations

import math
import random
from typing import Any, Mapping, Sequence

from tuner.hp import Boolean, Choice, Defaults, Fixed, Float, HyperParameters, Int, Param, describe, resolve, same_value

__all__ = ["GROWTH", "MIX", "RATE", "climb", "grow", "perturbations", "study_trend", "upgrade"]

# Share of the choice points a perturbation changes; about 3 of the ``improved`` space's 18.
RATE = 0.2
# Share of the choice points that take the value of another hand-chosen configuration (with ``mix``).
MIX = 1 / 3
# How much ``grow`` multiplies each width and the epochs by.
GROWTH = 2.0
# Spread of a numeric change: a fraction of the range (on the log scale for log-sampled numbers).
_SPREAD = 0.25


class _Perturbed(HyperParameters):
    def __init__(self, rng: random.Random, rate: float, pins: Mapping[str, Any],
                 mix: Sequence[Mapping[str, Any]] = (), center: Mapping[str, Any] | None = None):
        super().__init__()
        self.rng = rng
        self.rate = rate
        self.pins = dict(pins)
        self.mix = list(mix)
        self.center = dict(center or {})  # values to move from instead of the defaults
        self.changed: list[str] = []

    def _value(self, param: Param) -> Any:
        if param.name in self.pins:
            return self.pins[param.name]
        if isinstance(param, Fixed) or not param.is_tunable:
            return param.default
        start = param.default
        if param.name in self.center and param.contains(self.center[param.name]):
            start = self.center[param.name]
        if self.mix and self.rng.random() < MIX:
            other = self.rng.choice(self.mix)
            if param.name in other and param.contains(other[param.name]):
                start = other[param.name]
        value = start if self.rng.random() >= self.rate else _neighbour(param, start, self.rng)
        if not same_value(value, self.center.get(param.name, param.default)):
            self.changed.append(param.name)
        return value


class _Continued(HyperParameters):
    """Each numeric choice point one more step along the path from ``start`` to ``end`` (default: the defaults); the
    other choice points as in ``end``."""

    def __init__(self, start: Mapping[str, Any], pins: Mapping[str, Any], end: Mapping[str, Any] | None = None):
        super().__init__()
        self.start = dict(start)
        self.pins = dict(pins)
        self.end = dict(end or {})

    def _value(self, param: Param) -> Any:
        if param.name in self.pins:
            return self.pins[param.name]
        if not param.is_tunable:
            return param.default
        after = param.default
        if param.name in self.end and param.contains(self.end[param.name]):
            after = self.end[param.name]
        before = self.start.get(param.name)
        if (not isinstance(param, (Int, Float)) or not isinstance(before, (int, float)) or isinstance(before, bool)
                or same_value(before, after)):
            return after
        if param.sampling == "log" and before > 0 and after > 0:
            value = after * (after / before)
        else:
            value = after + (after - before)
        return _on_grid(param, value)


def _on_grid(param: Param, value: float) -> Any:
    """``value`` clipped to ``param``'s range (and rounded to its steps for integers)."""
    value = min(max(value, float(param.min_value)), float(param.max_value))
    if isinstance(param, Float):
        return value
    step = param.step or 1
    value = param.min_value + round((value - param.min_value) / step) * step
    return int(min(max(value, param.min_value), param.max_value))


def study_trend(space, pins: Mapping[str, Any], study: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The study continued one step, on each of its structures (see the module's docstring).

    Args:
        space: the space module; its defaults are the study's last (hand-chosen) configuration.
        pins: values that never change.
        study: the study's configurations in its order (the first is where its path starts).

    Returns:
        Resolved configurations, the ones on the study's earlier structures first; none when the study moved no
        numeric choice point.
    """
    if not study:
        return []
    trend = resolve(space, _Continued(study[0], pins))
    if _same_config(trend, resolve(space, Defaults(pins))):
        return []
    out: list[dict[str, Any]] = []
    for config in study:
        keep = {k: config[k] for k in getattr(space, "STRUCTURE", ()) if k in config and k not in pins}
        if keep:
            config = resolve(space, _Continued(study[0], {**pins, **keep}))
            if not any(_same_config(config, other) for other in (*out, trend)):
                out.append(config)
    return [*out, trend]


def _neighbour(param: Param, start: Any, rng: random.Random) -> Any:
    """Another value of ``param`` near ``start``."""
    if isinstance(param, Choice):
        others = [v for v in param.values if not same_value(v, start)]
        return rng.choice(others) if others else start
    if isinstance(param, Boolean):
        return not start
    if isinstance(param, (Int, Float)):
        low, high, default = float(param.min_value), float(param.max_value), float(start)
        if param.sampling == "log" and low > 0:
            low, high, default = math.log(low), math.log(high), math.log(max(default, low))
            return _on_grid(param, math.exp(rng.gauss(default, _SPREAD * (high - low))))
        return _on_grid(param, rng.gauss(default, _SPREAD * (high - low)))
    return start


def perturbations(space, pins: Mapping[str, Any], count: int, seed: int | None,
                  rate: float = RATE, mix: Sequence[Mapping[str, Any]] = ()) -> list[dict[str, Any]]:
    """``count`` distinct configurations near the space's defaults (pins kept), each differing in at least one choice.

    Args:
        space: the space module (its defaults are the study's hand-chosen configuration).
        pins: values that never change.
        count: how many configurations.
        seed: seeds the draws.
        rate: probability that a choice point moves to a neighbouring value.
        mix: the study's hand-chosen configurations (its baselines' values, in the study's order); the first warm
            starts are then the study continued (``study_trend``), and in the rest each choice point starts from one
            of their values with probability ``MIX`` (crossovers), from the default otherwise.

    Returns:
        Resolved configurations (active choice points only), fewer than ``count`` when the space has no more.
    """
    rng = random.Random(seed)
    base = resolve(space, _Perturbed(rng, 0.0, pins))
    seen = [base, *mix]  # the baselines themselves are trials already
    out: list[dict[str, Any]] = []

    def add(config: dict[str, Any]) -> None:
        if len(out) < count and not any(_same_config(config, other) for other in seen):
            seen.append(config)
            out.append(config)

    for config in study_trend(space, pins, mix) if mix else ():
        add(config)
    for _ in range(50 * max(count, 1)):
        if len(out) >= count:
            break
        hp = _Perturbed(rng, rate, pins, mix)
        config = resolve(space, hp)
        if hp.changed:
            add(config)
    return out


def _same_config(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    return a.keys() == b.keys() and all(same_value(a[k], b[k]) for k in a)


def climb(space, pins: Mapping[str, Any], best: Mapping[str, Any], tried: Sequence[Mapping[str, Any]],
          seed: int | None, rate: float = RATE, parent: Mapping[str, Any] | None = None) -> dict[str, Any] | None:
    """A configuration near ``best``: the step that led to it taken once more, or each choice point moved as in a
    warm start but from ``best``'s value.

    Args:
        space: the space module.
        pins: values that never change.
        best: the configuration to move from (the best trial so far).
        tried: configurations the study holds already; the result is none of them.
        seed: seeds the draws (``None``: unseeded, as for parallel workers).
        rate: probability that a choice point moves to a neighbouring value.
        parent: the configuration ``best`` was a step from, when it was one; a step that paid is first taken once
            more the same way (its numbers moved by the same amount, on their log scale where they are sampled so).

    Returns:
        A resolved configuration, or ``None`` when no untried one turned up.
    """
    if parent is not None:
        again = resolve(space, _Continued(parent, pins, end=best))
        if not any(_same_config(again, other) for other in (best, *tried)):
            return again
    rng = random.Random(seed)
    for _ in range(200):
        hp = _Perturbed(rng, rate, pins, center=best)
        config = resolve(space, hp)
        if hp.changed and not any(_same_config(config, other) for other in tried):
            return config
    return None


def grow(space, pins: Mapping[str, Any], best: Mapping[str, Any], tried: Sequence[Mapping[str, Any]],
         factor: float = GROWTH) -> dict[str, Any] | None:
    """``best`` made bigger: each choice point the space names in ``SCALE`` (widths, epochs) multiplied by
    ``factor``, clipped to its range (see the module's docstring).

    Args:
        space: the space module; a space without ``SCALE`` never grows.
        pins: values that never change.
        best: the configuration to grow (the best trial so far).
        tried: configurations the study holds already; the result is none of them.
        factor: the multiplier.

    Returns:
        A resolved configuration, or ``None`` when nothing grew (every such choice point at its maximum, pinned or
        inactive) or the grown configuration was tried already.
    """
    params = describe(space)
    grown = dict(best)
    for name in getattr(space, "SCALE", ()):
        param, value = params.get(name), best.get(name)
        if (name in pins or not isinstance(param, (Int, Float)) or not param.is_tunable
                or not isinstance(value, (int, float)) or isinstance(value, bool)):
            continue
        grown[name] = _on_grid(param, value * factor)
    return _step(space, pins, best, grown, tried)


def _step(space, pins: Mapping[str, Any], best: Mapping[str, Any], changed: Mapping[str, Any],
          tried: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    """``best`` with the values of ``changed`` (pins kept), resolved; ``None`` when that changes nothing or was
    tried already (``grow`` and ``upgrade``)."""
    config = resolve(space, Defaults({**best, **changed, **pins}))
    if _same_config(config, resolve(space, Defaults({**best, **pins}))):
        return None
    if any(_same_config(config, other) for other in tried):
        return None
    return config


def upgrade(space, pins: Mapping[str, Any], best: Mapping[str, Any],
            tried: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    """``best`` with the space's ``UPGRADE`` values (see the module's docstring), pins kept.

    Returns:
        A resolved configuration, or ``None`` for a space without ``UPGRADE``, a ``best`` that has its values
        already, or one whose upgrade was tried.
    """
    values = {k: v for k, v in dict(getattr(space, "UPGRADE", {})).items() if k not in pins}
    if not values:
        return None
    return _step(space, pins, best, values, tried)
