"""The ``cnntune`` command line (Typer + Rich). Parsing, rendering and exit codes only.

``key=value`` words describe the experiment; ``--options`` control the run. Commands that do not train never
import TensorFlow or Keras.
"""

from __future__ import annotations

import contextlib
import inspect
import sys
import typing
import warnings
from pathlib import PurePosixPath
from typing import Any, Callable, Iterator, List, Optional

import typer
from rich.console import Console

from tuner.errors import CnntuneError
from tuner.options import REPRODUCE_SEEDS, STORAGE_HELP, SearchOptions, bare_track, flag, option_fields
from tuner.quiet import set_verbose
from tuner.signals import interruptible
from tuner.store import redact

app = typer.Typer(
    name="cnntune",
    help="Automated search for Keras CNNs: search spaces from a hand-run study, replayed baselines, "
    "Optuna and Keras Tuner engines.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

STUDY_HELP = "Study name (default: the space's name; for reading commands, the only study in the storage)."
out = Console()
err = Console(stderr=True)


@app.callback()
def _terminals() -> None:
    # Made anew for each command: rich reads COLUMNS once, when a console is made, not when it prints.
    global out, err
    out, err = Console(), Console(stderr=True)
    warnings.showwarning = _warning_line


def _warning_line(message, category, filename, lineno, file=None, line=None) -> None:
    """A warning (a skipped image, a store read through Optuna) is one line on stderr, not Python's two."""
    err.print(f"warning: {message}", markup=False, highlight=False, soft_wrap=True)


@app.command()
def spaces(name: Optional[str] = typer.Argument(None, help="Show one space's choice points and baselines.")) -> None:
    """List the search spaces, with their number of choices and baselines."""
    with _guard():
        _spaces(name)


def _spaces(name: Optional[str]) -> None:
    from tuner import api
    from tuner.display import render_space_detail, render_spaces

    if name is None:
        render_spaces(out, api.spaces())
    else:
        render_space_detail(out, api.space_detail(name))


def _option_parameters(command: str) -> list[inspect.Parameter]:
    """``command``'s options generated from ``SearchOptions``'s fields: each field's flag (its name with dashes),
    default, type and help are the field's, so that an option is written once. A ``worker`` override defaults to
    ``None`` (the study's value); a boolean with another default than ``False`` gets its ``--no-`` form."""
    params = []
    for f, mode in option_fields(command):
        meta = f.metadata
        kind = meta["cli"] or _OPTION_TYPES[f.name]
        default = None if mode == "override" else (... if mode == "required" else f.default)
        name = flag(f.name)
        decls = [f"{name}/--no-{name[2:]}" if kind is bool and default is not False else name]
        if meta["short"]:
            decls.append(meta["short"])
        annotation = Optional[kind] if default is None else kind
        params.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation,
                                        default=typer.Option(default, *decls,
                                                             help=meta["helps"].get(command, meta["help"]))))
    return params


# Each option's type as the command line parses it: the field's annotation without its None.
_OPTION_TYPES = {name: next(a for a in typing.get_args(hint) or (hint,) if a is not type(None))
                 for name, hint in typing.get_type_hints(SearchOptions).items()}

_WORDS = inspect.Parameter("words", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Optional[List[str]],
                           default=typer.Argument(None, help="key=value words: space=NAME data=... data_dir=... "
                                                  "image_size=N classes=N epochs=N batch_size=N, or any choice point."))
_QUIET = inspect.Parameter("quiet", inspect.Parameter.KEYWORD_ONLY, annotation=bool,
                           default=typer.Option(False, "--quiet", "-q", help="No progress output."))
_VERBOSE = inspect.Parameter("verbose", inspect.Parameter.KEYWORD_ONLY, annotation=bool,
                             default=typer.Option(False, "--verbose", help="Let TensorFlow, Keras and Optuna print "
                                                  "their own messages and warnings."))


def _command(name: str, body: Callable[..., None], params: list[inspect.Parameter]) -> None:
    """Registers ``body`` as command ``name`` with ``params`` as its signature (Typer reads the signature)."""

    def command(**kwargs: Any) -> None:
        body(**kwargs)

    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in params}
    command.__doc__ = body.__doc__
    app.command(name)(command)


def _search(words: Optional[List[str]], quiet: bool, verbose: bool, **given: Any) -> None:
    """Search a space: cnntune search space=deeper_net --trials 50."""
    from tuner import api

    set_verbose(verbose)
    display = _progress(quiet)
    with _guard(), interruptible():
        result = api.search(words or [], SearchOptions(**given), display=display)
    _summary(result, quiet)


def _worker(study: str, storage: Optional[str], worker_id: Optional[str], quiet: bool, verbose: bool,
            **given: Any) -> None:
    """Join a study and run its trials until its budget is reached: cnntune worker --study c25 --storage URL."""
    from tuner import api

    set_verbose(verbose)
    display = _progress(quiet)
    overrides = {key: value for key, value in given.items() if value is not None}
    with _guard(), interruptible():
        result = api.worker(study, storage, overrides, worker_id=worker_id, display=display)
    _summary(result, quiet)


_WORKER_ID = inspect.Parameter("worker_id", inspect.Parameter.KEYWORD_ONLY, annotation=Optional[str],
                               default=typer.Option(None, "--worker-id", help="Its name (default worker-HOST-PID)."))
_command("search", _search, [_WORDS, *_option_parameters("search"), _QUIET, _VERBOSE])
_command("worker", _worker, [*_option_parameters("worker"), _WORKER_ID, _QUIET, _VERBOSE])


def _summary(result, quiet: bool) -> None:
    from tuner.display import render_result

    render_result(out, err, result, quiet=quiet)


TRIAL_FORMATS = ("table", "csv", "json")


@app.command("trials")
def trials_cmd(
    study: Optional[str] = typer.Option(None, "--study", help=STUDY_HELP),
    storage: Optional[str] = typer.Option(None, "--storage", help=STORAGE_HELP),
    wide: bool = typer.Option(False, "--wide", help="Every hyperparameter of every trial, not only those that "
                              "differ from the hand-chosen configuration."),
    fmt: str = typer.Option("table", "--format", help="table, csv or json (full records, for scripts)."),
    all_rows: bool = typer.Option(False, "--all", help="Every trial in the table (by default, past 50 trials: the "
                                  "baselines, the best and the latest)."),
) -> None:
    """Table of a study's trials."""
    from tuner import reporting  # only what reads a study: no training code is imported
    from tuner.display import TRIALS_SHOWN, render_trials, trials_rows, write_trials_csv

    with _guard():
        if fmt not in TRIAL_FORMATS:
            raise CnntuneError(f"--format must be one of {', '.join(TRIAL_FORMATS)}. Received: {fmt!r}")
        view = reporting.trials(study=study, storage=storage, history=fmt == "json")  # only json prints histories
        if fmt == "json":
            import json

            sys.stdout.write(json.dumps(trials_rows(view), indent=1, allow_nan=False, default=str) + "\n")
        elif fmt == "csv":
            write_trials_csv(sys.stdout, view)
        else:
            render_trials(out, view, wide=wide, limit=None if all_rows else TRIALS_SHOWN)


@app.command("report")
def report_cmd(
    study: Optional[str] = typer.Option(None, "--study", help=STUDY_HELP),
    storage: Optional[str] = typer.Option(None, "--storage", help=STORAGE_HELP),
    out_dir: str = typer.Option(..., "--out", help="Folder for report.md, report.html (self-contained) and the "
                                "figures (PNG); created if missing, an earlier report's files there are overwritten."),
) -> None:
    """Write a study up: baselines vs best, training curves, history, importances, Pareto front, state."""
    from tuner import api

    with _guard():
        result = api.report(study=study, storage=storage, out=out_dir)
    for name, reason in result.failed.items():
        err.print(f"warning: figure {name} not drawn: {reason}", markup=False, highlight=False, soft_wrap=True)
    out.print(f"wrote {result.markdown} and {result.html} ({len(result.figures)} figures) for study {result.study}",
              markup=False, highlight=False, soft_wrap=True)


@app.command("track")
def track_cmd(
    study: Optional[str] = typer.Option(None, "--study", help=STUDY_HELP),
    storage: Optional[str] = typer.Option(None, "--storage", help=STORAGE_HELP),
    uri: Optional[str] = typer.Option(None, "--track", help="Default: the study's, else $MLFLOW_TRACKING_URI."),
) -> None:
    """Log a study's finished trials to MLflow, those its experiment does not hold yet (twice logs nothing twice)."""
    from tuner import api

    with _guard():
        result = api.track(study=study, storage=storage, uri=uri)
    for line in result.warnings:
        err.print(line, markup=False, highlight=False, soft_wrap=True)
    out.print(f"logged {len(result.logged)} trials of study {result.study} to MLflow at {result.uri} "
              f"({result.already} were there)", markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(1 if result.unlogged else 0)


@app.command()
def dashboard(
    study: Optional[str] = typer.Option(None, "--study", help="Open this study's page (it must exist; default: the "
                                        "list of the store's studies)."),
    storage: Optional[str] = typer.Option(None, "--storage", help=STORAGE_HELP),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on; 0.0.0.0 exposes the dashboard to "
                             "the network, which it serves without a login (prefer an SSH tunnel)."),
    port: int = typer.Option(8080, "--port", help="Port to listen on (0: any free port)."),
    verbose: bool = typer.Option(False, "--verbose", help="Let Optuna print its own warnings (e.g. while it "
                                 "computes importances)."),
) -> None:
    """Serve optuna-dashboard on the study store until Ctrl-C: cnntune dashboard --study c25."""
    from tuner.reporting import open_dashboard

    set_verbose(verbose)
    with _guard():
        board = open_dashboard(storage=storage, study=study, host=host, port=port)
    where = "" if f"//{host}:" in board.url else f", listening on {host}"
    out.print(f"dashboard at {board.url} ({board.storage}{where}); Ctrl-C stops", markup=False, highlight=False,
              soft_wrap=True)
    sys.stdout.flush()  # the URL is for whoever reads a pipe or a log too, not only a terminal
    try:
        board.serve()
    except KeyboardInterrupt:
        pass  # Ctrl-C is how a dashboard ends, not an interruption of work: exit 0, no message
    finally:
        board.server.server_close()


@app.command()
def best(
    study: Optional[str] = typer.Option(None, "--study", help=STUDY_HELP),
    storage: Optional[str] = typer.Option(None, "--storage", help=STORAGE_HELP),
    export: Optional[str] = typer.Option(None, "--export", help="Write the best model to FILE.keras."),
    trial: Optional[int] = typer.Option(None, "--trial", help="Export this trial instead of the best."),
    reeval: Optional[int] = typer.Option(None, "--reeval", help="Retrain the top K distinct configurations with "
                                         "new seeds and rank them by mean validation accuracy."),
    seeds: Optional[int] = typer.Option(None, "--seeds", help="New seeds per configuration with --reeval "
                                        "(default 3)."),
    include_replays: bool = typer.Option(False, "--include-replays", help="Let reproduction and re-evaluation "
                                         "runs be picked as the best."),
    max_params: Optional[int] = typer.Option(None, "--max-params", help="The most accurate trial with at most N "
                                             "parameters (--export writes that one)."),
    max_latency_ms: Optional[float] = typer.Option(None, "--max-latency-ms", help="The most accurate trial at most "
                                                   "MS milliseconds per image (--objective accuracy,latency)."),
    register: Optional[str] = typer.Option(None, "--register", help="Also register the exported model as a new "
                                           "version of NAME in MLflow's model registry (with --export)."),
    track: Optional[str] = typer.Option(None, "--track", help="The MLflow tracking server for --register "
                                        "(default: the study's --track, else $MLFLOW_TRACKING_URI)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress output while retraining."),
    verbose: bool = typer.Option(False, "--verbose", help="Let TensorFlow, Keras and Optuna print their own "
                                 "messages and warnings."),
) -> None:
    """The best trial against the study's baselines; --export writes it as one .keras file."""
    from tuner import reporting  # only what reads a study (--reeval imports the rest)
    from tuner.display import render_best

    set_verbose(verbose)
    with _guard(), interruptible():
        if export is not None:
            export = reporting.export_target(export)  # checked once, before any work: what export() writes to
        elif trial is not None:
            raise CnntuneError(f"--trial {trial} names the trial to export; add --export FILE.keras")
        reporting.registry_uri(study=study, storage=storage, uri=track, name=register, export=export)
        limited = max_params is not None or max_latency_ms is not None
        if reeval is not None or seeds is not None:
            if limited:
                raise CnntuneError("--max-params/--max-latency-ms pick within a budget; --reeval ranks by accuracy "
                                   "alone: use one of them")
            _best_reeval(study, storage, export, trial, reeval, seeds, quiet, (register, track))
            return
        report = reporting.best(study=study, storage=storage, replays=include_replays, max_params=max_params,
                                history=False, max_latency_ms=max_latency_ms)
        render_best(out, report)
        if export is None:
            return
        if trial is None and limited:
            trial = report.best.number
        path = reporting.export(export, study=study, storage=storage, trial=trial)
        _exported(path, "", (register, track), study, storage)


def _exported(path, label: str, registry: tuple, study: Optional[str], storage: Optional[str]) -> None:
    """Says where the model went and, with ``--register NAME`` (``registry``: name, server), registers it."""
    out.print(f"exported {label}to {path} (raw uint8 images in, class probabilities out; metadata in "
              f"{PurePosixPath(str(path)).with_suffix('.json').name})", markup=False, highlight=False)
    if registry[0] is not None:
        from tuner import reporting

        version = reporting.register(path, registry[0], study=study, storage=storage, uri=registry[1])
        out.print(f"registered as {registry[0]} version {version} (models:/{registry[0]}/{version})", markup=False,
                  highlight=False, soft_wrap=True)


def _best_reeval(study: Optional[str], storage: Optional[str], export: Optional[str], trial: Optional[int],
                 reeval: Optional[int], seeds: Optional[int], quiet: bool, registry: tuple) -> None:
    """``best --reeval K --seeds S``: retrain, re-rank by the mean, and export the winner's original trial."""
    from tuner import api
    from tuner.display import render_reeval

    if reeval is None:
        raise CnntuneError("--seeds needs --reeval K (how many top configurations to retrain)")
    given = {} if seeds is None else {"seeds": seeds}  # reevaluate's own default otherwise
    report = api.reevaluate(study=study, storage=storage, top=reeval, display=_progress(quiet), **given)
    render_reeval(out, report)
    if export is None:
        return
    if trial is None and report.winner is None:
        raise CnntuneError("no re-evaluation run completed, so there is no winner to export; pass --trial N")
    number = report.winner.trial if trial is None else trial
    _exported(api.export(export, study=study, storage=storage, trial=number), f"trial {number} ", registry, study,
              storage)


def _reproduce(words: Optional[List[str]], seeds: int, out_dir: Optional[str], quiet: bool, verbose: bool,
               **given: Any) -> None:
    """Replay the study's baselines over several seeds: cnntune reproduce space=augmentation --seeds 3."""
    from tuner import api
    from tuner.display import render_reproduction
    from tuner.replays import check_out_dir

    set_verbose(verbose)
    with _guard(), interruptible():
        check_out_dir(out_dir)
        result = api.reproduce(words or [], SearchOptions(**given), seeds=seeds, display=_progress(quiet))
        paths = api.write_reproduction(result, out_dir)
    render_reproduction(out, result)
    out.print(f"ran {len(result.ran)} runs; wrote {' and '.join(str(p) for p in paths)}")


_SEEDS = inspect.Parameter("seeds", inspect.Parameter.KEYWORD_ONLY, annotation=int,
                           default=typer.Option(REPRODUCE_SEEDS, "--seeds",
                                                help="Seeds per baseline: --seed .. --seed + S - 1."))
_OUT = inspect.Parameter("out_dir", inspect.Parameter.KEYWORD_ONLY, annotation=Optional[str],
                         default=typer.Option(None, "--out", help="Folder for reproduce_<space>.csv and .json "
                                              "(default: the working directory)."))
_REPRO_WORDS = _WORDS.replace(default=typer.Argument(None, help="space=NAME or space=all, then data=... data_dir=... "
                                                     "image_size=N classes=N epochs=N, or any choice point."))
_command("reproduce", _reproduce, [_REPRO_WORDS, _SEEDS, *_option_parameters("reproduce"), _OUT, _QUIET, _VERBOSE])


def _progress(quiet: bool):
    """Progress bars on stderr, or nothing with --quiet."""
    from tuner.display import RichDisplay
    from tuner.records import Display

    return Display() if quiet else RichDisplay(err)


@contextlib.contextmanager
def _guard() -> Iterator[None]:
    """Turns errors a user can act on into one line on stderr and exit code 1."""
    try:
        yield
    except CnntuneError as exc:
        err.print(f"error: {redact(str(exc))}", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        err.print("interrupted: finished trials are kept; rerun the same command to resume")
        raise typer.Exit(130) from None


def main(argv: list[str] | None = None) -> None:
    """Entry point: usage errors also get one line and exit code 1, never a traceback."""
    try:
        args = bare_track(sys.argv[1:] if argv is None else list(argv))  # --track alone: MLFLOW_TRACKING_URI
        code = typer.main.get_command(app).main(args=args, prog_name="cnntune", standalone_mode=False)
    except typer.Exit as exc:
        code = exc.exit_code
    except typer.Abort:
        err.print("interrupted")
        code = 130
    except (typer.TyperException, CnntuneError) as exc:
        text = exc.format_message() if isinstance(exc, typer.TyperException) else redact(str(exc))
        err.print(f"error: {text}", markup=False, highlight=False, soft_wrap=True)
        code = 1
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
