"""The ``cnntune`` command line (Typer + Rich). Parsing, rendering and exit codes only.

``key=value`` words describe the experiment; ``--options`` control the run. Commands that do not train never
import TensorFlow or Keras.
"""

from __future__ import annotations

import contextlib
import sys
from typing import Iterator, List, Optional

import typer
from rich.console import Console

from tuner.errors import CnntuneError
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

STORAGE_HELP = "Optuna storage URL (sqlite:///file.db, postgresql://..., mysql+pymysql://..., journal:PATH)."
STUDY_HELP = "Study name (default: the space's name; for reading commands, the only study in the storage)."
MIXED_BACKENDS = typer.Option(False, "--allow-mixed-backends", help="Add trials to a study whose completed trials "
                              "trained on another Keras backend (KERAS_BACKEND) than this one.")

out = Console()
err = Console(stderr=True)


@app.callback()
def _terminals() -> None:
    # Made anew for each command: rich reads COLUMNS once, when a console is made, not when it prints.
    global out, err
    out, err = Console(), Console(stderr=True)


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


@app.command()
def search(
    words: Optional[List[str]] = typer.Argument(None, help="key=value words: space=NAME data=... data_dir=... "
                                                "image_size=N classes=N epochs=N batch_size=N, or any choice point."),
    trials: int = typer.Option(10, "--trials", "-n", help="Searched trials the study should hold (baselines extra)."),
    study: Optional[str] = typer.Option(None, "--study", help=STUDY_HELP),
    storage: Optional[str] = typer.Option(None, "--storage", help=STORAGE_HELP),
    sampler: Optional[str] = typer.Option(None, "--sampler", help="Optuna engine: tpe (default), random, grid, or "
                                          "nsga2 (two objectives)."),
    seed: int = typer.Option(0, "--seed", help="Seeds the sampler; trial n trains with seed+n."),
    timeout: Optional[float] = typer.Option(None, "--timeout", help="Start no new trial after SECONDS."),
    no_baselines: bool = typer.Option(False, "--no-baselines", help="Do not enqueue the space's baselines."),
    artifacts: Optional[str] = typer.Option(None, "--artifacts", help="Folder for model files."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress output."),
    skip_bad_images: bool = typer.Option(False, "--skip-bad-images",
                                         help="Skip unreadable image files (named in a warning) instead of failing."),
    engine: str = typer.Option("optuna", "--engine", help="optuna or keras-tuner (both record into the study)."),
    kt_tuner: Optional[str] = typer.Option(None, "--tuner", help="Keras Tuner engine: random (default), bayesian, "
                                           "hyperband or grid."),
    pruner: Optional[str] = typer.Option(None, "--pruner", help="Optuna engine: none (default), median, asha or "
                                         "hyperband."),
    max_failures: int = typer.Option(5, "--max-failures", help="Stop after N consecutive failed trials (0: never)."),
    chief: Optional[str] = typer.Option(None, "--chief", help="Keras Tuner engine: serve the oracle on HOST:PORT "
                                        "for `cnntune worker` processes."),
    warm_start: Optional[int] = typer.Option(None, "--warm-start", help="The first N searched trials start from the "
                                             "study's hand-chosen configurations (default 8 with TPE; 0: off)."),
    climb: Optional[float] = typer.Option(None, "--climb", help="Share of the trials, once the study continued has "
                                          "run, that step from the best one so far (default 0: off; e.g. 0.5)."),
    grow: Optional[bool] = typer.Option(None, "--grow/--no-grow", help="Make the best trial bigger while it trains "
                                        "faster than the hand-chosen model (default: on with TPE)."),
    max_epochs: Optional[int] = typer.Option(None, "--max-epochs", help="With a pruner: epochs are not searched; "
                                             "every trial may train up to N (default: the space's maximum)."),
    reeval_share: Optional[float] = typer.Option(None, "--reeval-share", help="Share of --timeout kept to retrain "
                                                 "the top configurations with new seeds; best then picks by the "
                                                 "mean (default 0.25 with TPE; 0: off)."),
    reeval_top: Optional[int] = typer.Option(None, "--reeval-top", help="How many configurations the "
                                             "re-evaluation ranks (default 3)."),
    workers: Optional[int] = typer.Option(None, "--workers", help="Start N worker processes on the study and wait "
                                          "for them (0: create the study and run nothing)."),
    gpus: Optional[str] = typer.Option(None, "--gpus", help="One worker per GPU: 0,1,2,3 or all (nvidia-smi -L); "
                                       "each sees only its GPU."),
    heartbeat_grace: Optional[float] = typer.Option(None, "--heartbeat-grace", help="Seconds without a heartbeat "
                                                    "before a worker counts as dead and its trial is retried "
                                                    "(default 90)."),
    isolate: bool = typer.Option(False, "--isolate", help="Run each trial in a child process: memory is returned "
                                 "after every trial, a crash fails only that trial."),
    objective: Optional[str] = typer.Option(None, "--objective", help="accuracy (default), accuracy,params or "
                                            "accuracy,latency: a two-objective study; best --max-params N picks."),
    allow_mixed_backends: bool = MIXED_BACKENDS,
    mixed_precision: Optional[str] = typer.Option(None, "--mixed-precision", help="bfloat16 or float16: train "
                                                  "under Keras's mixed-precision policy (GPUs); off (default)."),
    jit: Optional[bool] = typer.Option(None, "--jit/--no-jit", help="Compile training steps with XLA (TensorFlow, "
                                       "JAX) or torch.compile, or not (default: Keras's choice)."),
    trials_per_gpu: Optional[int] = typer.Option(None, "--trials-per-gpu", help="K workers per GPU of --gpus "
                                                 "(default all), each with a share of its memory."),
    device_data: Optional[str] = typer.Option(None, "--device-data", help="auto (default: on for JAX and PyTorch "
                                              "on a GPU), on or off: the data copied to the GPU once, batched there."),
    verbose: bool = typer.Option(False, "--verbose", help="Let TensorFlow, Keras and Optuna print their own "
                                 "messages and warnings."),
) -> None:
    """Search a space: cnntune search space=deeper_net --trials 50."""
    from tuner import api

    set_verbose(verbose)
    display = _progress(quiet)
    with _guard(), interruptible():
        result = api.search(words or [], trials=trials, study=study, storage=storage, sampler=sampler, seed=seed,
                            timeout=timeout, baselines=not no_baselines, artifacts=artifacts, display=display,
                            engine=engine, kt_tuner=kt_tuner, pruner=pruner, max_failures=max_failures,
                            chief=chief, skip_bad_images=skip_bad_images, warm_start=warm_start, climb=climb,
                            grow=grow, max_epochs=max_epochs, reeval_share=reeval_share, reeval_top=reeval_top,
                            workers=workers, gpus=gpus, heartbeat_grace=heartbeat_grace, isolate=isolate,
                            objective=objective, allow_mixed_backends=allow_mixed_backends,
                            mixed_precision=mixed_precision, jit=jit, trials_per_gpu=trials_per_gpu,
                            device_data=device_data)
    _summary(result, quiet)


@app.command()
def worker(
    study: str = typer.Option(..., "--study", help="The study to join (started by `cnntune search`)."),
    storage: Optional[str] = typer.Option(None, "--storage", help=STORAGE_HELP),
    engine: Optional[str] = typer.Option(None, "--engine", help="optuna or keras-tuner (default: the study's)."),
    chief: Optional[str] = typer.Option(None, "--chief", help="Keras Tuner engine: HOST:PORT of the chief."),
    worker_id: Optional[str] = typer.Option(None, "--worker-id", help="This worker's name (default worker-PID)."),
    max_failures: Optional[int] = typer.Option(None, "--max-failures", help="Default: the study's."),
    timeout: Optional[float] = typer.Option(None, "--timeout", help="Start no new trial after SECONDS (in a study "
                                            "that keeps time to re-evaluate, stop the running one then)."),
    heartbeat_grace: Optional[float] = typer.Option(None, "--heartbeat-grace", help="Seconds without a heartbeat "
                                                    "before a worker counts as dead (default: the study's)."),
    allow_mixed_backends: bool = MIXED_BACKENDS,
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress output."),
    verbose: bool = typer.Option(False, "--verbose", help="Let TensorFlow, Keras and Optuna print their own "
                                 "messages and warnings."),
) -> None:
    """Join a study and run its trials until its budget is reached: cnntune worker --study c25 --storage URL."""
    from tuner import api

    set_verbose(verbose)
    display = _progress(quiet)
    with _guard(), interruptible():
        result = api.worker(study=study, storage=storage, engine=engine, chief=chief, worker_id=worker_id,
                            max_failures=max_failures, display=display, timeout=timeout,
                            heartbeat_grace=heartbeat_grace, allow_mixed_backends=allow_mixed_backends)
    _summary(result, quiet)


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
    from tuner import api
    from tuner.display import TRIALS_SHOWN, render_trials, trials_rows, write_trials_csv

    with _guard():
        if fmt not in TRIAL_FORMATS:
            raise CnntuneError(f"--format must be one of {', '.join(TRIAL_FORMATS)}. Received: {fmt!r}")
        view = api.trials(study=study, storage=storage, history=fmt == "json")  # only json prints histories
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
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress output while retraining."),
    verbose: bool = typer.Option(False, "--verbose", help="Let TensorFlow, Keras and Optuna print their own "
                                 "messages and warnings."),
) -> None:
    """The best trial against the study's baselines; --export writes it as one .keras file."""
    from tuner import api
    from tuner.display import render_best

    set_verbose(verbose)
    with _guard(), interruptible():
        if export is not None:
            api.export_target(export)
        limited = max_params is not None or max_latency_ms is not None
        if reeval is not None or seeds is not None:
            if limited:
                raise CnntuneError("--max-params/--max-latency-ms pick within a budget; --reeval ranks by accuracy "
                                   "alone: use one of them")
            _best_reeval(study, storage, export, trial, reeval, seeds, quiet)
            return
        report = api.best(study=study, storage=storage, replays=include_replays, max_params=max_params, history=False,
                          max_latency_ms=max_latency_ms)
        render_best(out, report)
        if export is None:
            return
        if trial is None and limited:
            trial = report.best.number
        path = api.export(export, study=study, storage=storage, trial=trial)
        out.print(f"exported to {path} (raw uint8 images in, class probabilities out; metadata in "
                  f"{path.with_suffix('.json').name})")


def _best_reeval(study: Optional[str], storage: Optional[str], export: Optional[str], trial: Optional[int],
                 reeval: Optional[int], seeds: Optional[int], quiet: bool) -> None:
    """``best --reeval K --seeds S``: retrain, re-rank by the mean, and export the winner's original trial."""
    from tuner import api
    from tuner.display import render_reeval

    if reeval is None:
        raise CnntuneError("--seeds needs --reeval K (how many top configurations to retrain)")
    report = api.reevaluate(study=study, storage=storage, top=reeval, seeds=3 if seeds is None else seeds,
                        display=_progress(quiet))
    render_reeval(out, report)
    if export is None:
        return
    if trial is None and report.winner is None:
        raise CnntuneError("no re-evaluation run completed, so there is no winner to export; pass --trial N")
    number = report.winner.trial if trial is None else trial
    path = api.export(export, study=study, storage=storage, trial=number)
    out.print(f"exported trial {number} to {path} (metadata in {path.with_suffix('.json').name})")


@app.command()
def reproduce(
    words: Optional[List[str]] = typer.Argument(None, help="space=NAME or space=all, then data=... data_dir=... "
                                                "image_size=N classes=N epochs=N, or any choice point."),
    seeds: int = typer.Option(3, "--seeds", help="Seeds per baseline: --seed .. --seed + S - 1."),
    seed: int = typer.Option(0, "--seed", help="The first seed."),
    study: Optional[str] = typer.Option(None, "--study", help="Study name (default reproduce-<space>; with "
                                        "space=all a prefix: <study>-<space>). An existing study resumes."),
    storage: Optional[str] = typer.Option(None, "--storage", help=STORAGE_HELP),
    out_dir: Optional[str] = typer.Option(None, "--out", help="Folder for reproduce_<space>.csv and .json "
                                          "(default: the working directory)."),
    artifacts: Optional[str] = typer.Option(None, "--artifacts", help="Folder for model files."),
    skip_bad_images: bool = typer.Option(False, "--skip-bad-images",
                                         help="Skip unreadable image files (named in a warning) instead of failing."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress output."),
    verbose: bool = typer.Option(False, "--verbose", help="Let TensorFlow, Keras and Optuna print their own "
                                 "messages and warnings."),
) -> None:
    """Replay the study's baselines over several seeds: cnntune reproduce space=augmentation --seeds 3."""
    from tuner import api
    from tuner.display import render_reproduction
    from tuner.replays import check_out_dir

    set_verbose(verbose)
    with _guard(), interruptible():
        check_out_dir(out_dir)
        result = api.reproduce(words or [], seeds=seeds, seed=seed, study=study, storage=storage,
                               artifacts=artifacts, display=_progress(quiet), skip_bad_images=skip_bad_images)
        paths = api.write_reproduction(result, out_dir)
    render_reproduction(out, result)
    out.print(f"ran {len(result.ran)} runs; wrote {' and '.join(str(p) for p in paths)}")


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
    command = typer.main.get_command(app)
    try:
        code = command.main(args=argv, prog_name="cnntune", standalone_mode=False)
    except typer.Exit as exc:
        code = exc.exit_code
    except typer.Abort:
        err.print("interrupted")
        code = 130
    except typer.TyperException as exc:
        err.print(f"error: {exc.format_message()}", markup=False, highlight=False, soft_wrap=True)
        code = 1
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
