"""``report``: one study written up as ``report.md``, a self-contained ``report.html`` and its figures as PNG files.

What it holds, in reading order: the best trial and what mattered (the most important choice points and their best
values, the lead over the hand-chosen configuration against the validation noise); the baselines against the best, as
the reference study's tables (with the mean and spread of extra seeds where re-evaluation or reproduction runs exist);
training curves; the optimization history; the time to quality; hyperparameter importances (Optuna's fANOVA) and
accuracy by value of the top choice points; the Pareto front of a two-objective study (``tuner.store.pareto_front``:
from the records, accuracy up and size or latency down, whatever the study's directions); the study's state and
settings.

Each figure is drawn on its own: one that fails is named in the report with its reason and the rest is written.
The numbers are the store's, read by the same rules as ``trials`` and ``best`` (``_results``): replays are
never search results and the best is ``tuner.store.best_trial``'s. Nothing here imports Keras or prints.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from tuner.errors import CnntuneError
from tuner.reporting import _figures as figures
from tuner.reporting._doc import Document
from tuner.reporting._results import trials
from tuner.reporting._sections import ReportData, mattered, rows_table, state_section, value_panels
from tuner.store import SIZE_ATTRS, candidates, open_study, pareto_front, pct, read_records, study_meta

__all__ = ["SIZE_LABELS", "ReportResult", "report"]

# The second objective of a two-objective study (its stored ``objective``) and how the report names its measure.
SIZE_LABELS = {"params": "parameters", "latency": "latency (ms per image)"}


@dataclass
class ReportResult:
    """What ``report`` wrote.

    Attributes:
        study: the study's name.
        folder: the output folder.
        markdown, html: ``report.md`` and ``report.html``.
        figures: each drawn figure's name and PNG path, in report order.
        failed: each figure that could not be drawn and its one-line reason.
        best: the best trial's number; ``None`` without a completed trial.
    """

    study: str
    folder: Path
    markdown: Path
    html: Path
    figures: dict[str, Path] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    best: int | None = None


def _out_folder(out: str | Path | None) -> Path:
    """The output folder, checked before anything is read.

    Raises:
        CnntuneError: no folder given, or a path that is an existing file.
    """
    if out is None or not str(out).strip():
        raise CnntuneError("--out needs a folder for report.md, report.html and the figures")
    folder = Path(out).expanduser()
    if folder.exists() and not folder.is_dir():
        raise CnntuneError(f"--out {folder} is a file; pass a folder (created if missing) for report.md, "
                           "report.html and the figures")
    return folder


class _TooFew(ValueError):
    """Too little data for importances: said in the report, not a failure."""


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200]}" if text else type(exc).__name__


def _load(study: str | None, storage: str | None) -> ReportData:
    """The study's records and everything the sections read from the store."""
    view = trials(study=study, storage=storage)
    _, st = open_study(storage, view.study)
    space = None
    try:
        import search_spaces

        space = search_spaces.get_space(str(view.meta["space"]))
    except Exception:  # noqa: BLE001 - a foreign study or a moved space file: the report does without the space
        pass
    data = ReportData(view=view, space=space, frozen=list(st.get_trials(deepcopy=False)))
    # Reproduction runs of the baselines (`cnntune reproduce` writes `reproduce-<space>` in the same storage) add
    # seeds to the baselines' rows, when they ran on the same data.
    name = f"reproduce-{getattr(space, 'NAME', view.meta.get('space'))}"
    if name != view.study:
        try:
            _, repro = open_study(storage, name)
        except CnntuneError:
            repro = None
        if repro is not None and study_meta(repro).get("data") == view.meta.get("data"):
            data.repro = [r for r in read_records(repro) if r.tags.get("reproduce")]
    return data


def _importances(data: ReportData) -> tuple[dict[str, float], str]:
    """Optuna's parameter importances of validation accuracy over the completed searched trials and baselines.

    The trials are copied into an in-memory study with validation accuracy as the one value, so that replays stay
    out and a two-objective study is judged on accuracy, whatever its stored directions.

    Raises:
        ValueError: fewer than two usable trials or no choice point that varies (``_TooFew``), or no importance;
            Optuna's own errors pass through.
    """
    import optuna

    accuracy = {r.number: r.val_accuracy for r in candidates(data.view.records)}
    usable = [t for t in data.frozen if t.number in accuracy and t.params]
    if len(usable) < 2:
        raise _TooFew(f"they need at least 2 completed trials with recorded choices; the study has {len(usable)}")
    names = {k for t in usable for k in t.params}
    if not any(len({repr(t.params.get(k)) for t in usable}) > 1 for k in names):
        raise _TooFew("every completed trial has the same values: nothing varies")
    # fANOVA (a random forest over the choices) rather than Optuna's newer default, PED-ANOVA: PED-ANOVA contrasts
    # the top 10% of trials with the rest, which is one trial in a study of ten, while fANOVA still ranks the choice
    # points sensibly there. Seeded, so that the same study gives the same report. It reads the choice points every
    # trial has: conditional ones (another body's widths) are left out rather than failing.
    evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)
    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Optuna's experimental-feature notices are not the user's business
            memory = optuna.create_study(direction="maximize")
            memory.add_trials([optuna.trial.create_trial(params=t.params, distributions=t.distributions,
                                                         value=accuracy[t.number]) for t in usable])
            values = optuna.importance.get_param_importances(memory, evaluator=evaluator)
    finally:
        optuna.logging.set_verbosity(level)
    values = {k: float(v) for k, v in values.items() if math.isfinite(v)}
    if not values:
        raise ValueError("Optuna returned no importance")
    return values, "fANOVA"


def report(*, study: str | None = None, storage: str | None = None, out: str | Path) -> ReportResult:
    """Writes ``report.md``, ``report.html`` (figures embedded) and the figures as PNG files into ``out``.

    Args:
        study: study name; default the only study in the storage.
        storage: Optuna storage URL.
        out: the folder; created if missing. Files of an earlier report there are overwritten.

    Returns:
        A ``ReportResult``: the paths written, the figures drawn and the ones that failed with their reason.

    Raises:
        CnntuneError: ``out`` is a file or cannot be created, an unknown study or storage.
    """
    folder = _out_folder(out)
    data = _load(study, storage)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CnntuneError(f"cannot create the --out folder {folder}: {exc.strerror or exc}") from None
    view = data.view
    result = ReportResult(view.study, folder, folder / "report.md", folder / "report.html", best=view.best)
    doc = Document(f"cnntune report: study {view.study}")

    def draw(name: str, caption: str, fn: Callable[..., None], *args: Any) -> None:
        path = folder / f"{name}.png"
        try:
            fn(*args, path)
        except Exception as exc:  # noqa: BLE001 - one figure must not lose the report
            path.unlink(missing_ok=True)  # never leave an earlier report's figure under this name
            result.failed[name] = _one_line(exc)
            doc.failed(name, result.failed[name])
            return
        result.figures[name] = path
        doc.figure(path, caption)

    best = data.best
    doc.para(data.headline())
    if best is None:
        doc.para("**No completed trials**: " + data.why_empty() + " Nothing to compare or plot yet.")
        state_section(doc, data)
        _write(doc, result)
        return result
    imp, evaluator, imp_error, too_few = {}, "", None, False
    try:
        imp, evaluator = _importances(data)
    except _TooFew as exc:
        imp_error, too_few = str(exc), True
    except Exception as exc:  # noqa: BLE001 - conditional spaces and tiny studies can defeat the evaluators
        imp_error = _one_line(exc)

    doc.heading("What mattered")
    doc.bullets(mattered(data, imp, evaluator, imp_error))

    doc.heading("Baselines vs best")
    head, table, chart = rows_table(data)
    if table:
        doc.table(head, table)
        doc.para("`changes` lists the values that differ from the space's hand-chosen configuration. Improvements "
                 "are on test accuracy of single runs, as the reference study reported them; validation selects.")
        draw("comparison", "Validation and test accuracy of each baseline and the best trial (study's reported "
             "test accuracy as a black tick; error bars: spread over seeds where several exist).",
             figures.comparison, chart)
    else:
        doc.para("No baseline completed in this study (searched with `--no-baselines`?), so there is nothing "
                 "hand-chosen to compare with.")

    doc.heading("Training curves")
    series = data.curve_series()
    if series:
        draw("curves", "Loss and accuracy per epoch of the best trial and each baseline: training dashed, "
             "validation solid.", figures.curves, series)
    else:
        doc.para("No trial recorded a per-epoch history.")

    doc.heading("Optimization history")
    draw("history", "Validation accuracy of each trial in order (reproduction and re-evaluation runs left out) and "
         "the best so far; pruned trials at their best epoch, failed trials along the bottom.",
         figures.history, data.history_points())

    doc.heading("Time to quality")
    timed = data.time_points()
    if timed:
        draw("time_to_quality", "The best validation accuracy so far against wall time since the first trial "
             "started (reproduction and re-evaluation runs left out), each completed trial where it finished, and "
             "the best hand-chosen configuration dashed.", figures.time_to_quality, *timed)
    else:
        doc.para("The store recorded no trial times, or no trial completed.")

    doc.heading("Hyperparameter importance")
    if imp:
        draw("importance", f"How much of the variation in validation accuracy each choice point explains (Optuna's "
             f"{evaluator} evaluator over {len(candidates(view.records))} completed trials).",
             figures.importance, imp, evaluator)
        panels = value_panels(data, imp)
        if panels:
            doc.heading("Accuracy by value")
            draw("by_value", "Validation accuracy by value of the most important choice points (the best trial "
                 "starred).", figures.by_value, panels)
    elif too_few:
        doc.para(f"No importances: {imp_error}.")
    else:
        result.failed["importance"] = imp_error or "no importance"
        doc.failed("importance", result.failed["importance"])

    objective = data.objective()
    if len(objective) == 2 and objective[1] in SIZE_ATTRS:
        _pareto_section(doc, data, objective[1], draw)
    state_section(doc, data)
    _write(doc, result)
    return result


def _pareto_section(doc: Document, data: ReportData, other: str, draw: Callable[..., None]) -> None:
    label = SIZE_LABELS.get(other, other)

    def measure(rec):
        return getattr(rec, SIZE_ATTRS[other])

    doc.heading(f"Pareto front: accuracy vs {label}")
    front = pareto_front(data.view.records, other)
    if not front:
        doc.para(f"No completed trial recorded its {label}.")
        return
    pool = [r for r in candidates(data.view.records) if measure(r) is not None]
    base = [(r.baseline, measure(r), pct(r.val_accuracy)) for r in pool if r.baseline]
    draw("pareto", f"Validation accuracy against {label} (log scale); the non-dominated trials connected, the "
         "baselines labelled.", figures.pareto, [(measure(r), pct(r.val_accuracy), r.number) for r in pool],
         [(measure(r), pct(r.val_accuracy), r.number) for r in front], base, label)
    doc.para(f"The {len(front)} trials no other trial beats on both validation accuracy and {label}, smallest "
             "first:")
    doc.table(["trial", "baseline", "val %", "test %", label, "changes"],
              [[r.number, r.baseline or "", _num(pct(r.val_accuracy)), _num(pct(r.test_accuracy)),
                _measure_text(measure(r)), data.changes(r)] for r in front])


def _num(v: float | None, digits: int = 2) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def _measure_text(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{int(v):,}" if float(v).is_integer() else f"{v:.3g}"


def _write(doc: Document, result: ReportResult) -> None:
    result.markdown.write_text(doc.markdown(), encoding="utf-8")
    result.html.write_text(doc.html(), encoding="utf-8")

