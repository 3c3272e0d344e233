"""The report's numbers and sentences, computed from the records: the baselines table, what mattered, the values of
the top choice points, the study's state. ``_report`` lays them out and draws them; nothing here draws or
imports Keras.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from tuner.hp import Boolean, Choice, Float, Int, describe
from tuner.options import stored_record
from tuner.records import TrialRecord, val_noise_pp
from tuner.reporting._results import StudyView
from tuner.store import best_record, best_trial, candidates, is_replay, mean_std, pct, time_to_quality

__all__ = ["ReportData", "fmt_value", "mattered", "rows_table", "state_section", "value_panels"]

STATES = ("complete", "pruned", "fail", "running", "waiting")


def fmt_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, dict):
        return " ".join(f"{k}={fmt_value(x)}" for k, x in v.items()) or "-"
    if isinstance(v, (list, tuple)):
        return ", ".join(fmt_value(x) for x in v) or "-"
    return "-" if v is None else str(v)


def _num(v: float | None, digits: int = 2) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def _signed(v: float | None, unit: str = "") -> str:
    return "-" if v is None else f"{v:+.2f}{unit}"


def _mean_sd(mean: float | None, sd: float | None) -> str:
    return "-" if mean is None else f"{mean:.2f}" + (f" ± {sd:.2f}" if sd is not None else "")


@dataclass
class ReportData:
    """A study as the report reads it.

    Attributes:
        view: ``trials``'s view (records in order, metadata, best trial number, hand-chosen defaults).
        space: the space module, or ``None`` when it cannot be loaded here.
        frozen: the study's ``optuna`` trials (their sampled params and distributions, for the importances).
        repro: completed reproduction runs of this space on the same data (``reproduce-<space>``).
    """

    view: StudyView
    space: Any = None
    frozen: list[Any] = field(default_factory=list)
    repro: list[TrialRecord] = field(default_factory=list)

    @property
    def meta(self) -> dict[str, Any]:
        return self.view.meta

    @cached_property
    def search(self) -> list[TrialRecord]:
        """The search's own trials (baselines included), without reproduction and re-evaluation runs."""
        return [r for r in self.view.records if not is_replay(r)]

    @cached_property
    def best(self) -> TrialRecord | None:
        return next((r for r in self.view.records if r.number == self.view.best), None)

    @cached_property
    def params(self) -> dict[str, Any]:
        """The space's choice points (``tuner.hp.Param``) by name; empty without the space."""
        try:
            return describe(self.space) if self.space is not None else {}
        except Exception:  # noqa: BLE001 - only the figures' axes (log or not, categorical or not) use it
            return {}

    def changes(self, rec: TrialRecord) -> str:
        """The values that differ from the hand-chosen configuration (pins left out), as ``key=value`` words."""
        defaults, pins = self.view.defaults, set((self.meta.get("pins") or {}).keys())
        if not defaults:
            return " ".join(f"{k}={fmt_value(v)}" for k, v in rec.params.items() if k not in pins)
        changed = [f"{k}={fmt_value(v)}" for k, v in rec.params.items()
                   if k not in pins and (k not in defaults or defaults[k] != v)]
        return " ".join(changed) or "(hand-chosen)"

    def baselines(self) -> list[TrialRecord]:
        """The first completed run of each baseline, in the order the search ran them."""
        seen: dict[str, TrialRecord] = {}
        for r in self.search:
            if r.baseline and r.state == "complete" and r.baseline not in seen:
                seen[r.baseline] = r
        return list(seen.values())

    def hand_chosen(self) -> TrialRecord | None:
        """The study's hand-chosen configuration: the baseline named ``final``, else the last baseline."""
        base = self.baselines()
        return next((r for r in base if r.baseline == "final"), base[-1] if base else None)

    def objective(self) -> list[str]:
        """What the study optimizes (its stored ``objective``): ``["accuracy"]`` or accuracy and a second measure."""
        raw = stored_record(self.meta).get("objective") or ["accuracy"]
        return [str(s).strip() for s in (raw.split(",") if isinstance(raw, str) else raw)]

    def seed_runs(self, rec: TrialRecord, winner: bool) -> list[TrialRecord]:
        """The completed runs of ``rec``'s configuration with distinct seeds: its re-evaluation runs, reproduction
        runs of the same configuration, and ``rec`` itself unless it is the winner (it was selected for being high,
        so counting it would bias its mean upwards)."""
        runs = [] if winner else [rec]
        runs += [r for r in self.view.records if r.tags.get("reeval_of") == rec.number and r.state == "complete"]
        runs += [r for r in self.repro if r.state == "complete" and r.params == rec.params]
        by_seed: dict[Any, TrialRecord] = {}
        for r in runs:
            by_seed.setdefault(r.seed if r.seed is not None else ("trial", r.number), r)
        return list(by_seed.values())

    def headline(self) -> str:
        meta, data = self.meta, self.meta.get("data") or {}
        where = " ".join([str(data.get("name", "?"))] + [f"{k}={data[k]}" for k in ("image_size", "classes")
                                                          if data.get(k)])
        sizes = "/".join(str(meta.get(k, "?")) for k in ("n_train", "n_val", "n_test"))
        text = (f"Space `{meta.get('space', '?')}` on {where} ({sizes} train/validation/test images, "
                f"{meta.get('num_classes', '?')} classes); {len(self.view.records)} trials.")
        b = self.best
        if b is not None:
            tag = f", baseline `{b.baseline}`" if b.baseline else ""
            text += (f" Best: **trial {b.number}**{tag}: validation {_num(pct(b.val_accuracy))}%, test "
                     f"{_num(pct(b.test_accuracy))}%, {b.n_params or 0:,} parameters; changes: {self.changes(b)}.")
        return text

    def why_empty(self) -> str:
        states = Counter(r.state for r in self.view.records)
        if any(r.state == "complete" for r in self.view.records):
            return "the study holds only reproduction or re-evaluation runs, which are repeats, not search results."
        held = ", ".join(f"{n} {s}" for s, n in states.items()) or "no trials at all"
        return f"the study has no completed trial ({held})."

    def curve_series(self) -> list[tuple[str, dict[str, list[float]]]]:
        best = self.best
        series = [(f"best #{best.number}" + (f" ({best.baseline})" if best.baseline else ""), best.history)
                  ] if best is not None else []
        series += [(r.baseline, r.history) for r in self.baselines() if self.best is None or r.number != self.best.number]
        return [(label, hist) for label, hist in series if hist]

    def time_points(self) -> tuple[list, list, tuple[str, float] | None] | None:
        """The time-to-quality figure's data (``figures.time_to_quality``), in minutes and percent; ``None`` when
        the store recorded no times or no trial completed."""
        curve = time_to_quality(self.search)
        if not curve:
            return None
        first = min(r.started for r in self.search if r.started is not None)
        trials = [((r.finished - first) / 60, pct(r.val_accuracy)) for r in candidates(self.search)
                  if r.finished is not None]
        base = max((r for r in candidates(self.search) if r.baseline), key=lambda r: r.val_accuracy, default=None)
        return ([(s / 60, pct(v), n) for s, v, n in curve], trials,
                None if base is None else (base.baseline, pct(base.val_accuracy)))

    def history_points(self) -> list[dict[str, Any]]:
        return [{"number": r.number, "state": r.state, "val": pct(r.val_accuracy) if r.val_accuracy is not None
                 and math.isfinite(r.val_accuracy) else None, "baseline": r.baseline} for r in self.search]


def rows_table(data: ReportData) -> tuple[list[str], list[list[Any]], list[dict[str, Any]]]:
    """The baselines and the best as the reference study's tables: ``(head, rows, chart rows)``; empty without a
    completed baseline. Improvements are on single-run test accuracy, against BaseNet (the baseline named
    ``basenet``, else the first) and against the row above."""
    base = data.baselines()
    if not base:
        return [], [], []
    entries = [(r.baseline, r, False) for r in base]
    if data.best is not None:
        same = f" = {data.best.baseline}" if data.best.baseline else ""
        entries.append((f"best (trial {data.best.number}{same})", data.best, True))
    stats = []
    for _, rec, winner in entries:
        runs = data.seed_runs(rec, winner)
        val = mean_std([pct(r.val_accuracy) for r in runs])
        test = mean_std([pct(r.test_accuracy) for r in runs])
        stats.append((len(runs), val, test, any(r.number != rec.number for r in runs)))
    show_seeds = any(s[3] for s in stats)
    ref = next((r for r in base if r.baseline == "basenet"), base[0])
    head = ["configuration", "trial", "changes", "reported %", "val %", "test %", "params", "s"]
    if show_seeds:
        head += ["seeds", "val mean ± sd %", "test mean ± sd %"]
    head += [f"vs {ref.baseline} pp", f"vs {ref.baseline} %", "vs previous pp", "vs previous %"]
    rows, chart, prev = [], [], None
    for (label, rec, winner), (n, val, test, _) in zip(entries, stats):
        row = [label, rec.number, data.changes(rec), _num(rec.reported), _num(pct(rec.val_accuracy)),
               _num(pct(rec.test_accuracy)), f"{rec.n_params:,}" if rec.n_params else "-",
               f"{rec.seconds:.0f}" if rec.seconds is not None else "-"]
        if show_seeds:
            row += [n, _mean_sd(*val) if n else "-", _mean_sd(*test) if n else "-"]
        for other in (ref, prev):
            same = other is None or (other is rec and not winner)
            row += ["-", "-"] if same else [_signed(_diff_pp(rec, other)), _signed(_diff_pct(rec, other), "%")]
        rows.append(row)
        several = show_seeds and n > 1
        chart.append({"label": label, "val": pct(rec.val_accuracy), "test": pct(rec.test_accuracy),
                      "reported": rec.reported, "val_sd": val[1] if several else None,
                      "test_sd": test[1] if several else None})
        prev = rec
    return head, rows, chart


def _diff_pp(a: TrialRecord, b: TrialRecord) -> float | None:
    if a.test_accuracy is None or b.test_accuracy is None:
        return None
    return 100.0 * (a.test_accuracy - b.test_accuracy)


def _diff_pct(a: TrialRecord, b: TrialRecord) -> float | None:
    if a.test_accuracy is None or not b.test_accuracy:
        return None
    return 100.0 * (a.test_accuracy - b.test_accuracy) / b.test_accuracy


def _points(data: ReportData, name: str) -> list[tuple[Any, float]]:
    return [(r.params[name], pct(r.val_accuracy)) for r in candidates(data.view.records) if name in r.params]


def _kind(data: ReportData, name: str, values: list[Any]) -> tuple[str, bool]:
    """``(categorical|numeric, log x)`` of a choice point: the space's declaration, else guessed from the values."""
    param = data.params.get(name)
    if isinstance(param, (Choice, Boolean)):
        return "categorical", False
    if isinstance(param, (Int, Float)):
        return "numeric", param.sampling == "log"
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        positive = all(v > 0 for v in values)
        return "numeric", positive and max(values) / min(values) >= 100
    return "categorical", False


def value_panels(data: ReportData, imp: dict[str, float], top: int = 3) -> list[dict[str, Any]]:
    """The ``top`` most important choice points whose value varies: their trials' (value, validation %)."""
    panels = []
    for name in imp:
        points = _points(data, name)
        if len({repr(v) for v, _ in points}) < 2:
            continue
        kind, log = _kind(data, name, [v for v, _ in points])
        best = data.best.params.get(name) if data.best is not None else None
        panels.append({"name": name, "kind": kind, "log": log, "points": points, "best": best})
        if len(panels) == top:
            break
    return panels


def _value_sentence(data: ReportData, name: str) -> str:
    points = _points(data, name)
    best = data.best.params.get(name) if data.best is not None else None
    text = f"`{name}`: the best trial uses `{fmt_value(best)}`" if name in data.best.params else f"`{name}`: "
    kind, _ = _kind(data, name, [v for v, _ in points])
    if kind == "categorical":
        groups: dict[str, list[float]] = {}
        for v, acc in points:
            groups.setdefault(fmt_value(v), []).append(acc)
        ranked = sorted(groups.items(), key=lambda kv: -sum(kv[1]) / len(kv[1]))
        text += "; mean validation accuracy by value: " + ", ".join(
            f"`{k}` {sum(v) / len(v):.1f}% ({len(v)} trial{'s' if len(v) != 1 else ''})" for k, v in ranked)
    else:
        top = sorted(points, key=lambda p: -p[1])[:max(2, len(points) // 4)]
        low, high = min(v for v, _ in top), max(v for v, _ in top)
        text += f"; the {len(top)} most accurate trials use {fmt_value(low)} to {fmt_value(high)}"
    return text + "."


def mattered(data: ReportData, imp: dict[str, float], evaluator: str, error: str | None) -> list[str]:
    """A few sentences from the data: the most important choice points and their best values, and the lead over the
    hand-chosen configuration against the validation noise."""
    lines = []
    n = len(candidates(data.view.records))
    if imp:
        top = list(imp)[:3]
        lines.append(f"The choice points that mattered most (Optuna's {evaluator} importance over {n} completed "
                     "trials): " + ", ".join(f"`{k}` ({imp[k]:.2f})" for k in top) + ".")
        lines += [_value_sentence(data, k) for k in top if _points(data, k)]
    else:
        lines.append(f"No importances: {error}.")
    lines.append(_lead_sentence(data))
    return lines


def _lead_sentence(data: ReportData) -> str:
    best, hand = data.best, data.hand_chosen()
    if hand is None:
        return "No baseline completed, so there is no hand-chosen configuration to measure the best against."
    if best.number == hand.number:
        # The question turns around: how close did the search come to the hand-chosen configuration?
        searched = [r for r in candidates(data.view.records) if not r.baseline]
        text = (f"The hand-chosen configuration (`{hand.baseline}`, trial {hand.number}) is still the best: no "
                "searched trial beat its validation accuracy")
        if not searched:
            return text + "; no searched trial completed."
        best = best_record(searched)
        text += f"; the best searched trial ({best.number}, {pct(best.val_accuracy):.2f}%) is"
    else:
        text = f"The best trial ({best.number}) is"
    lead = 100.0 * (best.val_accuracy - hand.val_accuracy)
    rel = f" ({100.0 * lead / (100.0 * hand.val_accuracy):+.1f}%)" if hand.val_accuracy else ""
    text += (f" {lead:+.2f} pp{rel} in validation accuracy from the hand-chosen configuration (`{hand.baseline}`, "
             f"trial {hand.number}, {pct(hand.val_accuracy):.2f}%)")
    if best.test_accuracy is not None and hand.test_accuracy is not None:
        text += f" and {100.0 * (best.test_accuracy - hand.test_accuracy):+.2f} pp in test accuracy"
    n_val = data.meta.get("n_val")
    noise = val_noise_pp(best.val_accuracy, n_val)
    if noise is None:
        return text + "; the study does not record its validation-set size, so the noise is unknown."
    verdict = "beyond" if abs(lead) > 2 * noise else "within"
    text += (f". Validation noise is ±{noise:.1f} pp (one standard error on {n_val} images), so a difference under "
             f"about {2 * noise:.1f} pp is not evidence: this {'lead' if lead >= 0 else 'gap'} is **{verdict}** "
             "the noise")
    by_mean = best_trial(data.view.records)[1]
    if by_mean is not None and by_mean.val_mean is not None:
        text += (f"; the best was picked by its mean over {by_mean.runs} new seeds "
                 f"({_mean_sd(by_mean.val_mean, by_mean.val_std)}% validation)")
    return text + "."


def state_section(doc, data: ReportData) -> None:
    """The trials by state with the reasons of the failed and pruned ones, then the run's settings and data."""
    records = data.view.records
    doc.heading("State")
    counts = Counter(r.state for r in records)
    states = [s for s in STATES if counts[s]] + sorted(s for s in counts if s not in STATES)
    replays = sum(1 for r in records if is_replay(r))
    doc.table(["state", "trials"], [[s, counts[s]] for s in states] + [["total", len(records)]])
    if replays:
        doc.para(f"{replays} of them are reproduction or re-evaluation runs (repeats of known configurations).")
    for state, label in (("fail", "Failed"), ("pruned", "Pruned")):
        reasons = Counter(r.reason or "no reason recorded" for r in records if r.state == state)
        if reasons:
            doc.para(f"{label} trials by reason:")
            doc.bullets([f"{n} × {reason}" for reason, n in reasons.most_common()])
    doc.heading("Settings and data")
    meta = data.meta
    settings = stored_record(meta)
    # Unset options (the other engine's keys, defaults left as None) and the record's version would only add noise.
    rows = [[f"`{k}`", fmt_value(v)] for k, v in settings.items() if v is not None and k != "version"]
    rows += [[f"`data.{k}`", fmt_value(v)] for k, v in (meta.get("data") or {}).items() if v is not None]
    rows += [[f"`{k}`", fmt_value(meta[k])] for k in ("space", "pins", "options", "n_train", "n_val", "n_test",
                                                       "num_classes", "input_shape", "created")
             if meta.get(k) not in (None, {}, [])]
    if rows:
        doc.table(["setting", "value"], rows)
    else:
        doc.para("The study stores no cnntune metadata (not made by `cnntune search`).")
