"""Rich rendering for the CLI: search progress, the trials table, the best-trial report, the spaces list.

The only module that prints; the API hands it records.
"""

from __future__ import annotations

from enum import Enum
from typing import Any, Iterable

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from tuner.records import Display, TrialRecord
from tuner.hp import format_value

__all__ = ["RichDisplay", "fmt_params", "render_best", "render_reeval", "render_reproduction", "render_space_detail",
           "render_spaces", "render_trials"]


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100.0 * v:.2f}"


def _signed(v: float | None, unit: str = "") -> str:
    return "-" if v is None else f"{v:+.2f}{unit}"


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def fmt_params(params: dict[str, Any], skip: Iterable[str] = (), limit: int | None = None) -> str:
    items = [f"{k}={_value(v)}" for k, v in params.items() if k not in set(skip)]
    if limit is not None and len(items) > limit:
        items = items[:limit] + [f"+{len(items) - limit} more"]
    return " ".join(items)


class RichDisplay(Display):
    """Progress bars for trials and epochs, and one line per finished trial."""

    def __init__(self, console: Console | None = None):
        self.console = console or Console(stderr=True)
        self.progress: Progress | None = None
        self.trial_task = None
        self.epoch_task = None
        self.total = 0

    def search_begin(self, *, study, space, data, trials, baselines) -> None:
        self.total = trials + baselines
        extra = f" + {baselines} baseline{'s' if baselines != 1 else ''}" if baselines else ""
        self.console.print(f"[bold]study[/] {study}: space [cyan]{space}[/] on {data}, {trials} trials{extra}")
        self.progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            console=self.console, transient=True,
        )
        self.progress.start()
        self.trial_task = self.progress.add_task("trials", total=self.total)

    def trial_begin(self, *, number, params, baseline, epochs, seed=None, chain=None) -> None:
        if self.progress is None:
            return
        label = f"trial {number}" + (f" ({baseline})" if baseline else "")
        if self.epoch_task is not None:
            self.progress.remove_task(self.epoch_task)
        self.epoch_task = self.progress.add_task(f"  {label} epochs", total=epochs)

    def epoch_end(self, *, number, epoch, epochs, logs) -> None:
        if self.progress is not None and self.epoch_task is not None:
            val = logs.get("val_accuracy")
            desc = f"  trial {number} epochs" + (f" val {100 * val:.1f}%" if val is not None else "")
            self.progress.update(self.epoch_task, completed=epoch, description=desc)

    def trial_end(self, record: TrialRecord) -> None:
        if self.progress is not None:
            self.progress.advance(self.trial_task)
        tag = f" [magenta]{record.baseline}[/]" if record.baseline else ""
        if record.state == "complete":
            self.console.print(
                f"trial {record.number}{tag}: val {_pct(record.val_accuracy)}% test {_pct(record.test_accuracy)}% "
                f"({record.n_params:,} params, {record.seconds or 0:.1f} s)"
            )
        elif record.state == "pruned":
            self.console.print(f"trial {record.number}{tag}: [yellow]{record.reason or 'pruned'}[/] "
                               f"(val {_pct(record.val_accuracy)}% so far)")
        else:
            self.console.print(f"trial {record.number}{tag}: [red]{record.state}[/] {record.reason or ''}")

    def message(self, text: str) -> None:
        self.console.print(text)

    def worker_output(self, worker: str, line: str) -> None:
        self.console.print(f"[dim]{escape(worker)}[/] {escape(line)}", highlight=False)

    def search_end(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None
            self.epoch_task = None


TRIALS_SHOWN = 50


def shown_trials(view, limit: int | None = TRIALS_SHOWN) -> list:
    """The rows of a trials table: every trial, or past ``limit`` the baselines, the best trial and the latest
    trials up to ``limit`` rows, in trial order (a table of thousands of rows helps nobody and takes seconds)."""
    records = view.records
    if limit is None or len(records) <= limit:
        return list(records)
    keep = {r.number for r in records if r.baseline} | ({view.best} if view.best is not None else set())
    for r in reversed(records):
        if len(keep) >= limit:
            break
        keep.add(r.number)
    return [r for r in records if r.number in keep]


def render_trials(console: Console, view, wide: bool = False, limit: int | None = TRIALS_SHOWN) -> None:
    """The trials of a study as a table that fits the terminal: each trial's hyperparameters that differ from the
    space's hand-chosen configuration (``wide``: all of them); at most ``limit`` rows (``shown_trials``)."""
    meta = view.meta
    fixed = set((meta.get("pins") or {}).keys())
    compact = not wide and bool(view.defaults)
    rows = shown_trials(view, limit)
    notes = ["hyperparameters: the values that differ from the hand-chosen configuration (--wide: all)"] if compact \
        else []
    if len(rows) < len(view.records):
        notes.append(f"{len(rows)} of {len(view.records):,} trials: the baselines, the best and the latest "
                     "(--all: every trial; --format csv|json: every record)")
    # Column rules instead of a full grid: the space goes to the hyperparameters, which then wrap between values.
    table = Table(title=f"study {view.study}: {meta.get('space', '?')} on {_data_label(meta)}", box=box.SIMPLE_HEAD,
                  collapse_padding=True, pad_edge=False, caption="\n".join(notes) or None)
    # --wide also names each trial's Keras backend (a study may mix them with --allow-mixed-backends).
    backend = (("backend", "left"),) if wide else ()
    for col, just in (("#", "right"), ("state", "left"), ("baseline", "left"), ("val %", "right"),
                      ("test %", "right"), ("params", "right"), ("s", "right"), *backend):
        table.add_column(col, justify=just, overflow="fold", no_wrap=col != "state")
    table.add_column("hyperparameters", overflow="fold", ratio=1, min_width=16)
    for r in rows:
        # The trial `best` reports and exports (tuner.store.best_trial), never a replay.
        style = "bold green" if r.number == view.best else ("red" if r.state == "fail" else None)
        state = r.state if r.state != "fail" or not r.reason else f"fail: {r.reason}"
        if compact:
            # A choice point the hand-chosen configuration does not use (another body's widths) differs too.
            changed = {k: v for k, v in r.params.items() if k not in view.defaults or view.defaults[k] != v}
            shown = fmt_params(changed, skip=fixed) or "(hand-chosen)"
        else:
            shown = fmt_params(r.params, skip=fixed)
        table.add_row(
            str(r.number), state, r.baseline or "", _pct(r.val_accuracy), _pct(r.test_accuracy),
            f"{r.n_params:,}" if r.n_params else "-", f"{r.seconds:.0f}" if r.seconds else "-",
            *([r.backend or "-"] if wide else []), shown, style=style,
        )
    console.print(table)


TRIAL_FIELDS = ("number", "state", "baseline", "val_accuracy", "test_accuracy", "n_params", "seconds", "seed",
                "best_epoch", "epochs_run", "backend", "kind", "reason", "model_path")


def trials_rows(view) -> list[dict[str, Any]]:
    """Every trial's full record as plain values, for ``trials --format json``: the fields above, ``params``,
    ``tags`` and ``history``."""
    rows = []
    for r in view.records:
        row = {name: getattr(r, name) for name in TRIAL_FIELDS}
        row.update(params=dict(r.params), tags=dict(r.tags), history=dict(r.history), best=r.number == view.best)
        rows.append(row)
    return rows


def write_trials_csv(out, view) -> None:
    """Every trial as one CSV row: the fields above, then one ``param.NAME`` column per hyperparameter (empty where a
    trial has no such choice point, e.g. another body's widths), then ``best``."""
    import csv

    names: list[str] = []
    for r in view.records:
        names += [k for k in r.params if k not in names]
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([*TRIAL_FIELDS, *(f"param.{k}" for k in names), "best"])
    for r in view.records:
        writer.writerow([_csv(getattr(r, f)) for f in TRIAL_FIELDS] + [_csv(r.params.get(k)) for k in names]
                        + [str(r.number == view.best).lower()])


def _csv(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, Enum):
        return str(value.value)
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def _data_label(meta: dict[str, Any]) -> str:
    data = meta.get("data") or {}
    parts = [str(data.get("name", "?"))]
    parts += [f"{k}={data[k]}" for k in ("image_size", "classes") if data.get(k)]
    return " ".join(parts)


def render_best(console: Console, report) -> None:
    """The best trial and how much it beats each baseline."""
    b = report.best
    tag = f" (baseline {b.baseline})" if b.baseline else ""
    console.print(f"[bold]best trial[/] {b.number}{tag} of study {report.study}: "
                  f"val {_pct(b.val_accuracy)}%, test {_pct(b.test_accuracy)}%, {b.n_params or 0:,} params, "
                  f"seed {b.seed}, epoch {b.best_epoch}" + (f", trained on {b.backend}" if b.backend else "")
                  + (f" in mixed {b.tags['precision']}" if b.tags.get("precision") else ""))
    console.print(f"  {fmt_params(b.params)}")
    row = report.picked_by_mean
    if row is not None:
        console.print(f"  picked by the mean validation accuracy of {row.runs} new seed{'s' if row.runs != 1 else ''}: "
                      f"val {_mean_std(row.val_mean, row.val_std)}%, test {_mean_std(row.test_mean, row.test_std)}%"
                      + (f"; the single-run best is trial {report.single_run_best.number} "
                         f"(val {_pct(report.single_run_best.val_accuracy)}%)" if report.single_run_best else ""))
    if report.noise_pp is not None:
        n_val = report.meta.get("n_val")
        console.print(f"  validation noise: +-{report.noise_pp:.1f} pp (one standard error on {n_val} images); "
                      "differences smaller than about twice that are not evidence")
    if not report.comparisons:
        console.print("  no baseline completed in this study")
        return
    title = "best vs baselines (measured in this study)"
    heads = (("trial",), ("study", "reported %"), ("val %",), ("test %",), ("best -", "val pp"), ("best -", "test pp"),
             ("best /", "test"))  # the lines of each figure's header
    rows = [(c.baseline.baseline, str(c.baseline.number),
             "-" if c.baseline.reported is None else f"{c.baseline.reported:.2f}", _pct(c.baseline.val_accuracy),
             _pct(c.baseline.test_accuracy), _signed(c.d_val_pp), _signed(c.d_test_pp), _signed(c.d_test_pct, "%"))
            for c in report.comparisons]
    widths = [max(*map(len, head), *(len(row[i + 1]) for row in rows)) for i, head in enumerate(heads)]
    names = min(max(len(row[0]) for row in rows), 10)  # a baseline's name may fold onto more lines
    if sum(widths) + names + 3 * (len(heads) + 1) - 1 > console.width:  # padding and rules, no outer edge
        console.print(title)  # too narrow for the table: a line each, every figure whole
        for name, *figures in rows:
            console.print(f"  {name}: " + ", ".join(f"{' '.join(head)} {value}" for head, value in zip(heads, figures)))
        return
    table = Table(title=title, box=box.SIMPLE_HEAD, show_edge=False)
    table.add_column("baseline", overflow="fold")
    for head, width in zip(heads, widths):  # a figure is never cut
        table.add_column("\n".join(head), justify="right", no_wrap=True, min_width=width)
    for row in rows:
        table.add_row(*row)
    console.print(table)


def render_result(out: Console, err: Console, result, *, quiet: bool) -> None:
    """What a search or a worker ran and the best so far (on ``out``, unless ``quiet``); its message on ``err``."""
    if result.message:
        err.print(result.message)
    if not quiet:
        done = sum(1 for r in result.ran if r.state == "complete")
        out.print(f"ran {len(result.ran)} trials ({done} complete) in study {result.study} ({result.storage})",
                  soft_wrap=True)
        if result.best is not None:
            b = result.best
            tag = f" (baseline {b.baseline})" if b.baseline else ""
            out.print(f"best so far: trial {b.number}{tag}, val {100 * b.val_accuracy:.2f}%"
                      + (f", test {100 * b.test_accuracy:.2f}%" if b.test_accuracy is not None else ""))
        if result.pareto:
            points = "; ".join(f"trial {r.number} val {100 * r.val_accuracy:.1f}% "
                               + (f"{r.latency_ms:.3g} ms" if r.latency_ms is not None else f"{r.n_params:,} params")
                               for r in result.pareto)
            out.print(f"Pareto front ({len(result.pareto)} trials, smallest first): {points}; pick within a budget "
                      "with cnntune best --max-params N (or --max-latency-ms MS)", soft_wrap=True)


def render_spaces(console: Console, rows: list[dict[str, Any]]) -> None:
    table = Table(title="search spaces")
    for col in ("space", "choices", "baselines", "default data", "description"):
        table.add_column(col, overflow="fold")
    for row in rows:
        table.add_row(row["name"], str(row["choices"]), str(row["baselines"]), row["data"], row["description"])
    console.print(table)


def render_space_detail(console: Console, detail: dict[str, Any]) -> None:
    """One space's choice points (kind, values, default, condition) and its baselines."""
    table = Table(title=f"space {detail['name']}: choice points")
    table.add_column("name", no_wrap=True)
    for col in ("kind", "values", "default", "active when"):
        table.add_column(col, overflow="fold")
    params = detail["params"]
    for p in params.values():
        cond = " and ".join(_condition(c, params.get(c.name)) for c in p.conditions)
        table.add_row(p.name, p.kind, p.summary(), str(p.default), cond)
    console.print(table)
    base = Table(title="baselines")
    for col in ("name", "study reported %", "params", "note"):
        base.add_column(col, overflow="fold")
    for b in detail["baselines"]:
        base.add_row(b.name, "-" if b.reported is None else f"{b.reported:.2f}",
                     " ".join(f"{k}={v}" for k, v in b.params.items()), b.note)
    console.print(base)


def _condition(cond, parent) -> str:
    """``body = resnet``, ``body != resnet`` (all of a choice's values but one) or ``mix in {mixup, cutmix}``."""
    values = [format_value(v) for v in cond.values]
    if len(values) == 1:
        return f"{cond.name} = {values[0]}"
    others = [format_value(v) for v in getattr(parent, "values", ()) if format_value(v) not in values]
    if len(others) == 1:
        return f"{cond.name} != {others[0]}"
    return f"{cond.name} in {{{', '.join(values)}}}"


def _num(v: float | None, digits: int = 2) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def _mean_std(mean: float | None, std: float | None) -> str:
    if mean is None:
        return "-"
    return f"{mean:.2f}" + (f" ± {std:.2f}" if std is not None else "")


def render_reproduction(console: Console, result) -> None:
    """Per space: the study's number of each baseline against the measured mean; then the claims, held or not."""
    for part in result.spaces:
        data = part.data.get("name")
        table = Table(title=f"reproduce {part.space} (study {part.study}, data {data}, seeds "
                            f"{' '.join(str(s) for s in result.seeds)})")
        for col, just in (("baseline", "left"), ("study %", "right"), ("runs", "right"), ("val mean %", "right"),
                          ("test mean ± std %", "right"), ("measured - study pp", "right")):
            table.add_column(col, justify=just)
        for row in part.rows:
            runs = str(row.runs) + (f" ({row.diverged} diverged)" if row.diverged else "")
            table.add_row(row.baseline, _num(row.reported), runs, _num(row.val_mean),
                          _mean_std(row.test_mean, row.test_std), _signed(row.diff_pp))
        console.print(table)
    if result.claims:
        # One line per claim: the sentence stays readable where a table column would break it mid-word.
        console.print("[bold]the study's claims, checked on the measured mean test accuracy[/]")
        for c in result.claims:
            colour = {"held": "green", "not held": "red"}.get(c.status, "yellow")
            measured = (f"measured {_num(c.better_mean)} vs {_num(c.worse_mean)}"
                        + (f" ({_signed(c.diff_pp)}" + (f" ± {c.se_pp:.2f}" if c.se_pp is not None else "") + " pp)"
                           if c.diff_pp is not None else ""))
            console.print(f"  [{colour}]{c.status}[/]: {c.space}: {c.text} ({c.better} > {c.worse}); "
                          f"study {_num(c.better_reported)} vs {_num(c.worse_reported)}, {measured}"
                          + (f"; {c.why}" if c.why else ""), highlight=False)
    if any(part.data.get("name") != "cifar100_25" for part in result.spaces):
        console.print("note: the study's numbers are on cifar100_25 at full length; on other data or with pinned "
                      "epochs only the orderings (claims) are comparable, not the accuracies")


def render_reeval(console: Console, report) -> None:
    """The top configurations re-ranked by the mean validation accuracy of new seeds, and the winner."""
    table = Table(title=f"study {report.study}: top {len(report.rows)} configurations retrained with "
                        f"{report.seeds} new seeds each, ranked by mean validation accuracy")
    for col, just in (("rank", "right"), ("was", "right"), ("trial", "right"), ("baseline", "left"),
                      ("single run val %", "right"), ("single run test %", "right"), ("runs", "right"),
                      ("val mean ± std %", "right"), ("test mean ± std %", "right"), ("hyperparameters", "left")):
        table.add_column(col, justify=just, overflow="fold")
    fixed = set((report.meta.get("pins") or {}).keys())
    for row in report.rows:
        runs = str(row.runs) + (f" ({row.diverged} diverged)" if row.diverged else "")
        table.add_row(str(row.rank), str(row.original_rank), str(row.trial), row.baseline or "",
                      _num(row.original_val), _num(row.original_test), runs, _mean_std(row.val_mean, row.val_std),
                      _mean_std(row.test_mean, row.test_std), fmt_params(row.params, skip=fixed),
                      style="bold green" if row.rank == 1 and row.val_mean is not None else None)
    console.print(table)
    winner = report.winner
    if winner is None:
        console.print("no re-evaluation run completed; no winner")
        return
    tag = f" (baseline {winner.baseline})" if winner.baseline else ""
    line = (f"winner by mean: trial {winner.trial}{tag}, val {_mean_std(winner.val_mean, winner.val_std)}% over "
            f"{winner.runs} new seeds (its single run: {_num(winner.original_val)}%)")
    if report.lead_pp is not None:
        line += f"; lead over the next {report.lead_pp:.2f} pp"
        if report.lead_se_pp is not None:
            line += f" ± {report.lead_se_pp:.2f}"
            if report.lead_pp < 2 * report.lead_se_pp:
                line += " (within noise: the top configurations are not distinguishable with these seeds)"
    if winner.original_rank != 1:
        first = next(r for r in report.rows if r.original_rank == 1)
        line += f"; the single-run best (trial {first.trial}) ranks {first.rank} by the mean"
    console.print(line)
