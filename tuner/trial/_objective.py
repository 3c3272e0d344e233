"""The trial objective: run one configuration and record it, the same way for both engines and for replays.

``Objective(trial, params, attrs)`` trains ``params`` with the trial runner and writes what it measured into the
trial's user attributes. It is the one place that maps every way a trial can end to a record: a ``FailureKind``
(``fail_kind``) and a one-line message (``fail_reason``); engines only map the exception to Optuna's state.

* completed: ``val_accuracy``, ``test_accuracy``, ``n_params``, ``history``, ``best_epoch``, ``epochs_run``,
  ``seconds``, ``model_path``, ``backend`` (and the runner's extras, e.g. ``feature_cache``); returns the validation
  accuracy;
* pruned: the same, plus ``PRUNED`` / ``"pruned at epoch N"`` (or, stopped at the objective's deadline, ``TIME_UP``
  / ``"stopped at epoch N: the search's time was up"``); raises ``optuna.TrialPruned``;
* diverged: ``DIVERGED`` / ``"diverged at epoch N"`` and the history so far; re-raises;
* Ctrl-C / SIGTERM: ``INTERRUPTED`` / ``"interrupted"``; re-raises (the study resumes by retrying it);
* out of memory (TensorFlow, JAX/XLA, PyTorch, Python): ``OUT_OF_MEMORY`` / ``"out of memory at batch size N"``;
* the trial's own process died (``--isolate``): ``CRASHED`` and why;
* any other exception: ``ERROR`` / ``"Type: message"``; re-raises (the engine records the trial as failed).

Trials that a search retries (Optuna engine, no replay) survive preemption: the runner checkpoints each one at the
end of every epoch into ``<model_dir>/checkpoints/trial_NNNN/`` (a local folder or object storage). A retry
(``retry_of``: the search re-enqueued an interrupted trial, or Optuna's heartbeat retries a dead worker's trial) reads
its predecessor's checkpoint in the chain's folder (``checkpoint_of``, also shown as ``chain``), resumes from it when
of the same configuration and writes there; it records ``resumed_from_epoch`` (0: nothing to resume). The checkpoint
is deleted once the trial is over and kept when it is interrupted.

Model files go to ``<model_dir>/trial_NNNN.keras``; with ``model_dir`` in object storage the runner saves the model
into the local ``staging`` folder and the objective uploads it, so that runners only ever write local files. ``trial``
is an Optuna trial or anything with ``number``, ``set_user_attr``, ``report`` and ``should_prune`` (the Keras Tuner
engine records through one). ``attrs`` are the trial's identifying attributes: ``baseline``, ``seed`` (a replay's own
seed), ``initial_epoch`` and ``continue_from`` (a Hyperband round continuing an earlier one).
"""

from __future__ import annotations

import inspect
import time
from pathlib import Path
from typing import Any, Callable

from tuner.errors import CnntuneError
from tuner.experiment import Experiment
from tuner.options import SearchOptions
from tuner.records import Display, FailureKind, replaced_trial
from tuner.signals import raise_if_interrupted
from tuner.store import CHECKPOINT_OF, EPOCH_REACHED, RESUMED_FROM, Artifacts, Location, jsonable
from tuner.trial import _checkpoint
from tuner.trial._accel import accel_of
from tuner.trial._isolate import TrialCrashed, isolated
from tuner.trial._runner import TrialDiverged, fit_options, run_trial

__all__ = ["EpochPruning", "Objective", "Runner", "fail_reason", "failure_of", "is_out_of_memory"]

# The function that trains one configuration: ``tuner.trial.run_trial`` or anything with its signature (a custom
# training loop, a test double).
Runner = Callable[..., Any]
_REASON_CHARS = 500
# Out-of-memory errors, recognized without importing their frameworks: TensorFlow's ResourceExhaustedError ("OOM when
# allocating tensor"), JAX/XLA's XlaRuntimeError ("RESOURCE_EXHAUSTED: Out of memory ..."), PyTorch's
# OutOfMemoryError ("CUDA out of memory"), Python's MemoryError.
_OOM_TYPES = ("ResourceExhaustedError", "OutOfMemoryError", "MemoryError")
_OOM_TEXT = ("resource_exhausted", "resource exhausted", "out of memory", "oom when allocating")


class EpochPruning:
    """The runner's ``on_epoch``/``should_stop`` hooks for one trial: report each epoch, stop when pruned.

    Steps are epoch numbers counted from 1 (``tuner.searching.engines.make_pruner`` sets its warm-up accordingly).

    Args:
        trial: the running ``optuna.trial.Trial`` (or any object with ``report`` and ``should_prune``).
        enabled: ``False`` reports nothing and never stops (baselines, ``--pruner none``).
        epochs: the trial's epochs; the last one is never "pruned" (the trial is complete by then).
        then: called after each epoch with ``(epoch, logs)`` (progress display).
        stop_at: a ``clock()`` time after which the trial stops at the end of its epoch, pruner or not, once its
            study holds a complete trial (a search that stops at its time still has a model to pick); ``None``: never.
        clock: seconds (``time.monotonic``, or a test's clock).
    """

    def __init__(self, trial, enabled: bool, epochs: int,
                 then: Callable[[int, dict[str, float]], None] | None = None, stop_at: float | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.trial = trial
        self.enabled = enabled
        self.epochs = epochs
        self.then = then
        self.stop_at = stop_at
        self.clock = clock
        self.pruned_at: int | None = None
        self.kind = FailureKind.PRUNED
        self.reason = ""

    def on_epoch(self, epoch: int, logs: dict[str, float]) -> None:
        if self.then is not None:
            self.then(epoch, logs)
        if self.enabled:
            value = logs.get("val_accuracy", logs.get("accuracy"))
            if value is not None:
                self.trial.report(float(value), epoch)

    def should_stop(self, epoch: int, logs: dict[str, Any]) -> bool:
        if epoch >= self.epochs:
            return False
        if self.enabled and self.trial.should_prune():
            self.kind, self.reason = FailureKind.PRUNED, f"pruned at epoch {epoch}"
        elif self.stop_at is not None and self.clock() >= self.stop_at and self._study_has_a_model():
            self.kind, self.reason = FailureKind.TIME_UP, f"stopped at epoch {epoch}: the search's time was up"
        else:
            return False
        self.pruned_at = epoch
        return True

    def _study_has_a_model(self) -> bool:
        study = getattr(self.trial, "study", None)
        if study is None:
            return True
        import optuna

        return bool(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)))

    def replay(self, history: dict[str, list[float]], last_epoch: int) -> None:
        """Reports the epochs a resumed trial's predecessor trained (``history``, ending at ``last_epoch``), so that
        the pruner compares it with other trials at those epochs too."""
        values = history.get("val_accuracy") or history.get("accuracy") or []
        if self.enabled:
            for epoch, value in enumerate(values, start=last_epoch - len(values) + 1):
                self.trial.report(float(value), epoch)


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` (or an exception it was raised from) is an out-of-memory error of any framework, by class name
    and message."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if any(t.__name__ in _OOM_TYPES for t in type(exc).__mro__):
            return True
        text = str(exc).lower()
        if any(marker in text for marker in _OOM_TEXT):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def fail_reason(exc: BaseException, batch_size: int | None = None) -> str:
    """The one line a failed trial records (``failure_of``'s message)."""
    return failure_of(exc, batch_size)[1]


def failure_of(exc: BaseException, batch_size: int | None = None) -> tuple[FailureKind, str]:
    """How a trial that raised ``exc`` ended: its kind and one line. ``out of memory at batch size N`` for an
    out-of-memory error (when the batch size is known), ``interrupted`` for Ctrl-C / SIGTERM, the runner's message
    for a divergence, else ``Type: first line of the message`` (at most 500 characters)."""
    if isinstance(exc, KeyboardInterrupt):
        return FailureKind.INTERRUPTED, "interrupted"
    if isinstance(exc, TrialDiverged):
        return FailureKind.DIVERGED, str(exc)
    if batch_size is not None and is_out_of_memory(exc):
        return FailureKind.OUT_OF_MEMORY, f"out of memory at batch size {int(batch_size)}"
    text = str(exc).strip().splitlines()
    kind = FailureKind.CRASHED if isinstance(exc, TrialCrashed) else FailureKind.ERROR
    return kind, f"{type(exc).__name__}: {text[0] if text else ''}"[:_REASON_CHARS]


def _system_attrs(trial) -> dict[str, Any]:
    """A running Optuna trial's system attributes as stored (a heartbeat retry's ``failed_trial`` and
    ``retry_history``); ``{}`` for the Keras Tuner engine's recording trial."""
    study = getattr(trial, "study", None)
    if study is None:
        return {}
    import optuna

    running = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
    frozen = next((t for t in running if t.number == trial.number), None)
    return {} if frozen is None else dict(frozen.system_attrs)


def _accepts(runner: Runner, name: str) -> bool:
    """Whether ``runner`` takes the keyword argument ``name`` (runners written before it existed do not)."""
    try:
        params = inspect.signature(runner).parameters.values()
    except (TypeError, ValueError):
        return True
    return any(p.name == name or p.kind is inspect.Parameter.VAR_KEYWORD for p in params)


class Objective:
    """Runs one configuration of an experiment as a trial and records it.

    Args:
        exp: the experiment (space, pins, run options).
        data: the loaded ``Dataset``.
        model_dir: folder of the trials' model files (``trial_NNNN.keras``) and checkpoints: a path, a URL of object
            storage or a ``Location``.
        staging: a local folder where the runner saves a model bound for object storage (default: a temporary
            folder).
        feature_cache: folder of cached backbone features (spaces with a frozen backbone).
        seed: searched trial ``n`` trains with ``seed + n``; a replay carries its own seed in ``attrs``.
        display: receives progress.
        prune: report each epoch's validation accuracy and stop when the trial's pruner says so.
        engine: recorded as the trial's ``engine`` attribute (the engine's ``TAG``; ``None`` records none).
        worker: recorded as the trial's ``worker`` attribute: the worker that ran it (``cnntune worker --worker-id``).
        resumes: the engine retries interrupted trials, so searched trials are checkpointed every epoch.
        runner: trains one configuration; default ``tuner.trial.run_trial``.
        latency: also measure the trained model's milliseconds per image (``latency_ms``), for a study whose
            second objective is latency.
        accel: the runner's ``precision`` and ``jit`` keywords (``tuner.trial.accel_of``); empty: Keras's defaults.
        clock: seconds (``time.monotonic``, or a test's clock), for ``stop_at``.

    ``stop_at`` (set after construction, ``None`` by default): a ``clock()`` time after which a searched
    trial stops at the end of its epoch and is recorded as pruned once the study holds a complete trial (either
    engine; baselines always finish, and so does the first trial of a search without them). A search, or a worker of
    a study, that keeps a share of its ``--timeout`` for the re-evaluation sets it, so that a long last trial cannot
    take it.

    Raises:
        CnntuneError: ``accel`` holds a keyword that ``runner`` does not take.
    """

    def __init__(self, exp: Experiment, data, *, model_dir: Path | str | Location, feature_cache: Path, seed: int,
                 display: Display, staging: Path | None = None, prune: bool = False, engine: str | None = None,
                 worker: str | None = None, resumes: bool = True, runner: Runner | None = None, latency: bool = False,
                 accel: dict[str, Any] | None = None, clock: Callable[[], float] = time.monotonic):
        self.exp = exp
        self.data = data
        self.model_dir = Location.of(model_dir)
        self.staging = staging
        self.feature_cache = Path(feature_cache)
        self.seed = int(seed)
        self.display = display
        self.prune = prune
        self.engine = engine
        self.worker = worker
        self.resumes = resumes
        self.clock = clock
        self.runner = runner or run_trial
        self.can_checkpoint = _accepts(self.runner, "checkpoint_dir") and _accepts(self.runner, "resume_from")
        self.latency = latency and _accepts(self.runner, "measure_latency")
        self.accel = dict(accel or {})
        self.stop_at: float | None = None
        missing = [key for key in self.accel if not _accepts(self.runner, key)]
        if missing:
            raise CnntuneError(f"this trial runner does not take {', '.join(missing)}; drop --mixed-precision, --jit "
                               "and --device-data")

    @classmethod
    def of(cls, options: SearchOptions, exp: Experiment, data, artifacts: Artifacts, display: Display,
           runner: Runner | None = None, **kwargs: Any) -> "Objective":
        """The objective a search, a re-evaluation or a reproduction runs its trials with, from its options: each
        trial in its own process with ``--isolate`` (the data the children memory-map beside the study), trained
        under ``--mixed-precision``, ``--jit`` and ``--device-data``, its latency measured for a latency
        objective. ``kwargs``: the constructor's other keywords (``model_dir`` defaults to the study's folder).
        """
        if options.isolate:
            runner = isolated(runner, workdir=artifacts.root)
        kwargs.setdefault("model_dir", artifacts.files)
        kwargs.setdefault("staging", artifacts.root)
        return cls(exp, data, feature_cache=artifacts.feature_cache, seed=options.seed, display=display,
                   runner=runner, latency="latency" in (options.objective or ()), accel=accel_of(options), **kwargs)

    def model_path(self, number: int) -> Location:
        """Where trial ``number``'s model file is stored."""
        return self.model_dir / f"trial_{number:04d}.keras"

    def checkpoint_dir(self, number: int) -> Location:
        """The folder of the checkpoint of trial ``number``'s chain (the trial and its retries)."""
        return self.model_dir / "checkpoints" / f"trial_{number:04d}"

    def chain(self, trial, attrs: dict[str, Any]) -> int:
        """The trial whose checkpoint folder ``trial`` reads and writes: its chain's (``checkpoint_of``), else the
        trial it retries (a retry queued before chains were recorded: its predecessor moved the checkpoint into its
        own folder), else its own."""
        if attrs.get(CHECKPOINT_OF) is not None:
            return int(attrs[CHECKPOINT_OF])
        before = self.predecessor(trial, attrs)
        return trial.number if before is None else before

    def resumable(self, attrs: dict[str, Any]) -> bool:
        """Whether a trial is checkpointed: only trials that something retries are. The Optuna engine retries
        interrupted trials and dead workers' trials; replays are rerun by their own command as new runs, and Keras
        Tuner keeps its own trial state."""
        return (self.can_checkpoint and self.resumes and not attrs.get("reproduce")
                and attrs.get("reeval_of") is None)

    def predecessor(self, trial, attrs: dict[str, Any]) -> int | None:
        """The trial that ``trial`` retries, or ``None`` (``tuner.records.replaced_trial``)."""
        return replaced_trial(attrs, _system_attrs(trial))

    def _take_over(self, trial, attrs: dict[str, Any], params: dict[str, Any], folder: Location,
                   pruning: EpochPruning) -> bool:
        """Whether ``folder`` holds a checkpoint this retry resumes (its chain's, of the same configuration); a
        checkpoint it cannot resume is deleted."""
        if self.predecessor(trial, attrs) is None:
            return False
        meta = _checkpoint.read_meta(folder)
        resumed = (meta is not None and int(meta.get("epoch", 0)) > 0
                   and _checkpoint.same_config(meta.get("config") or {}, params))
        if not resumed:
            _checkpoint.discard(folder)  # of another configuration, or empty: nobody else would resume from it
        epoch = int(meta["epoch"]) if resumed else 0
        trial.set_user_attr(RESUMED_FROM, epoch)  # also overwrites a value a heartbeat retry copied
        trial.set_user_attr(EPOCH_REACHED, epoch)
        if resumed:
            pruning.replay(meta.get("history") or {}, epoch)
        return resumed

    def __call__(self, trial, params: dict[str, Any], attrs: dict[str, Any]) -> float:
        """Runs ``params`` as ``trial`` and records it; returns the validation accuracy.

        Raises:
            optuna.TrialPruned: the trial was pruned (recorded with its measurements).
            BaseException: whatever ended the trial otherwise, recorded first (``failure_of``).
        """
        folder = chain = None
        if self.resumable(attrs):
            chain = self.chain(trial, attrs)
            trial.set_user_attr(CHECKPOINT_OF, chain)  # its retries, however queued, read this folder
            folder = self.checkpoint_dir(chain)
        try:
            return self._run(trial, params, attrs, folder, chain)
        except BaseException as exc:
            if type(exc).__name__ == "TrialPruned":
                raise  # recorded as pruned by _run
            try:
                batch_size = fit_options(params).batch_size
            except (TypeError, ValueError):
                batch_size = None
            kind, reason = failure_of(exc, batch_size)
            trial.set_user_attr("fail_kind", kind.value)
            trial.set_user_attr("fail_reason", reason)
            if isinstance(exc, TrialDiverged):
                trial.set_user_attr("history", exc.history)
            if kind is not FailureKind.INTERRUPTED:  # an interrupted trial's checkpoint stays: its retry resumes
                self._discard(folder)
            raise

    def _run(self, trial, params: dict[str, Any], attrs: dict[str, Any], folder: Location | None,
             chain: int | None) -> float:
        raise_if_interrupted()  # a Ctrl-C the garbage collector swallowed between trials
        trial_seed = int(attrs["seed"]) if attrs.get("seed") is not None else self.seed + trial.number
        trial.set_user_attr("seed", trial_seed)
        trial.set_user_attr("config", jsonable(params))
        if self.engine:
            trial.set_user_attr("engine", self.engine)
        if self.worker:
            trial.set_user_attr("worker", self.worker)
        epochs, display = fit_options(params).epochs, self.display
        display.trial_begin(number=trial.number, params=params, baseline=attrs.get("baseline"), epochs=epochs,
                            seed=trial_seed, chain=chain)

        def on_epoch(epoch: int, logs: dict[str, float]) -> None:
            display.epoch_end(number=trial.number, epoch=epoch, epochs=epochs, logs=logs)
            if folder is not None:  # checkpointed: a retry after this worker dies knows the trial made progress
                trial.set_user_attr(EPOCH_REACHED, epoch)

        searched = not attrs.get("baseline")
        pruning = EpochPruning(trial, self.prune and searched, epochs, then=on_epoch,
                               stop_at=self.stop_at if searched else None, clock=self.clock)
        continued = {k: attrs[k] for k in ("initial_epoch", "continue_from") if attrs.get(k) is not None}
        if self.latency:
            continued["measure_latency"] = True
        continued.update(self.accel)
        if folder is not None:  # an interrupt while taking over keeps the checkpoint for the next retry
            resumed = self._take_over(trial, attrs, params, folder, pruning)
            place = folder.local or folder.where  # runners take a path, or a URL
            continued.update(checkpoint_dir=place, resume_from=place if resumed else None)
        stored = self.model_path(trial.number)
        with stored.staged(self.staging) as model_path:
            out = self.runner(self.exp.space, params, self.data, seed=trial_seed, model_path=model_path,
                              on_epoch=pruning.on_epoch, should_stop=pruning.should_stop,
                              spec_options=self.exp.options, feature_cache=self.feature_cache, **continued)
            saved = out.model_path
            if saved and stored.remote:
                stored.upload(saved)
                saved = stored.where
        for key, value in (
            ("val_accuracy", out.val_accuracy),
            ("test_accuracy", out.test_accuracy),
            ("n_params", out.n_params),
            ("history", out.history),
            ("best_epoch", out.best_epoch),
            ("epochs_run", out.epochs_run),
            ("seconds", round(out.seconds, 3)),
            ("model_path", saved),
            ("backend", out.backend),
            *out.extra.items(),  # e.g. feature_cache: hit|built|off and feature_seconds
        ):
            trial.set_user_attr(key, value)
        self._discard(folder)  # the trial is over (complete or pruned): nothing will resume it
        if pruning.pruned_at is not None:
            import optuna  # only the Optuna engine prunes

            trial.set_user_attr("fail_kind", pruning.kind.value)
            trial.set_user_attr("fail_reason", pruning.reason)
            raise optuna.TrialPruned(pruning.reason)
        return out.val_accuracy

    @staticmethod
    def _discard(folder: Location | None) -> None:
        if folder is not None:
            _checkpoint.discard(folder)

