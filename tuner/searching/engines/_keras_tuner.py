"""The Keras Tuner engine: the same spaces searched by Keras Tuner 1.4's tuners, recorded in the Optuna study.

A space is already written in the Keras Tuner vocabulary, so ``SpaceModel`` (a ``keras_tuner.HyperModel``) hands
Keras Tuner's own ``HyperParameters`` to ``space.declare``. Pins are pre-registered as ``hp.Fixed`` (with
``tune_new_entries=True`` for the rest); the plan's baselines, then its warm starts, are the oracle's first trials
(trial ids ``0, 1, ...``, whatever the tuner), so every study measures them with the searched trials. Each finished trial is recorded as an
Optuna trial with the same user attributes as the Optuna engine plus ``engine='keras-tuner'``: the Optuna storage
stays the single system of record, and ``cnntune trials`` / ``best --export`` work whatever engine ran.
Keras Tuner's project folder (its oracle state, for resuming) is ``plan.artifacts.keras_tuner``.

The plan decides when to stop (budget, timeout, failure streak): the tuner asks it before every new trial.
Hyperband: a trial promoted to the next round (``tuner/trial_id``) continues from the model its previous round saved
and trains epochs ``tuner/initial_epoch + 1 .. tuner/epochs`` only, as Keras Tuner's own ``Tuner`` does.

Distributed: the chief serves the oracle over gRPC (``KERASTUNER_TUNER_ID=chief``); each worker runs trials until
the oracle answers ``STOPPED``, then exits; the chief exits once every worker has been told to stop and no trial
is running (or, when a worker died, ``CHIEF_GRACE`` seconds after the last trial ended).
"""

from __future__ import annotations

import contextlib
import io
import os
import time
from typing import Any, Iterator

from tuner.errors import CnntuneError
from tuner.experiment import grid_values, trial_config, tunable
from tuner.hp import resolve
from tuner.options import KERAS_TUNER, SearchOptions, option_value
from tuner.records import FailureKind, TrialRecord
from tuner.searching._plan import SearchPlan
from tuner.searching.engines import _kt_compat
from tuner.searching.engines._kt_compat import CHIEF_TIMEOUT
from tuner.searching.engines._optuna import OptunaHP
from tuner.store import Location
from tuner.trial import model_spec

__all__ = ["NAME", "check", "model_dir", "parse_address", "prepare", "run", "wait_for_chief"]

NAME = KERAS_TUNER
# What the engine can do (see the Optuna engine's): its oracle proposes and numbers its own trials, so the strategy's
# trials cannot be queued one at a time (warm starts are served as its first trials); Keras Tuner keeps its own trial
# state, so trials are not resumed from checkpoints; its workers follow a chief (``--chief``), not a storage.
QUEUES_TRIALS = False
RESUMES_TRIALS = False
POOLED_WORKERS = False
TAG = KERAS_TUNER
_PROJECT = "keras_tuner"


def parse_address(address: str) -> tuple[str, int]:
    """``HOST:PORT`` -> ``(host, port)``.

    Raises:
        CnntuneError: not ``HOST:PORT`` with a port in 1..65535 (``--chief``'s check).
    """
    host, _, port = option_value("chief", address).rpartition(":")
    return host, int(port)


def wait_for_chief(address: str, timeout: float = CHIEF_TIMEOUT) -> None:
    """Waits until the chief listens: it serves only once the study exists, so a worker started at the same time
    never races it to create the study (or the SQLite schema).

    Raises:
        CnntuneError: nothing listens at ``address`` within ``timeout`` seconds.
    """
    import socket

    host, port = parse_address(address)
    host = "127.0.0.1" if host in ("0.0.0.0", "") else host
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=2):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise CnntuneError(f"no chief answers at {address}; start `cnntune search --chief {address}` "
                                   "first") from None
            time.sleep(0.5)


def check(options: SearchOptions, experiment) -> None:
    """Checks the Keras Tuner engine's options against the space before any data is loaded.

    Raises:
        SpaceError: a grid over a continuous choice point.
    """
    if options.tuner == "grid":
        grid_values(experiment.space, experiment.pins, option="--tuner grid")


def model_dir(artifacts):
    """Keras Tuner numbers its trials itself: their model files get a folder of their own in the study's files."""
    return artifacts.files / artifacts.keras_tuner.name


def prepare(plan: SearchPlan) -> None:
    """Nothing to queue before workers start: the chief's oracle serves the baselines and warm starts first."""


class RecordingTrial:
    """Stands in for an Optuna trial while Keras Tuner runs one: collects user attributes, never prunes. ``study``:
    the Optuna study its record goes to (the objective's search-phase deadline asks it for a complete trial)."""

    def __init__(self, number: int, user_attrs: dict[str, Any] | None = None, study=None):
        self.number = number
        self.user_attrs: dict[str, Any] = dict(user_attrs or {})
        self.study = study

    def set_user_attr(self, key: str, value: Any) -> None:
        self.user_attrs[key] = value

    def report(self, value: float, step: int) -> None:
        pass

    def should_prune(self) -> bool:
        return False


@contextlib.contextmanager
def _kt_environment(plan: SearchPlan) -> Iterator[None]:
    """Sets ``KERASTUNER_*`` for the chief or a worker (Keras Tuner reads them), and restores them after."""
    names = ("KERASTUNER_TUNER_ID", "KERASTUNER_ORACLE_IP", "KERASTUNER_ORACLE_PORT")
    saved = {n: os.environ.get(n) for n in names}
    for n in names:
        os.environ.pop(n, None)
    if plan.options.chief is not None:
        host, port = parse_address(plan.options.chief)
        os.environ["KERASTUNER_TUNER_ID"] = plan.worker_id or "chief"
        os.environ["KERASTUNER_ORACLE_IP"] = host
        os.environ["KERASTUNER_ORACLE_PORT"] = str(port)
    try:
        yield
    finally:
        for n, v in saved.items():
            if v is None:
                os.environ.pop(n, None)
            else:
                os.environ[n] = v


class _StopSearch(Exception):
    """Raised before a new trial when the plan says stop (budget, timeout, failure streak)."""


def run(plan: SearchPlan) -> None:
    """Runs a Keras Tuner search: locally, as the chief (serves the oracle) or as a worker (runs trials).

    Raises:
        CnntuneError: a worker without a chief, a chief that cannot listen, a worker that lost its chief.
    """
    if plan.worker_id is not None and plan.options.chief is None:
        raise CnntuneError("a Keras Tuner worker needs --chief HOST:PORT")
    with _kt_environment(plan):
        tuner = _make_tuner(plan)
        if plan.options.chief is not None and plan.worker_id is None:
            host, port = parse_address(plan.options.chief)
            _kt_compat.serve(tuner, host, port, plan.options.chief)
            return
        import grpc

        try:
            tuner.search(verbose=0)
        except _StopSearch:
            pass
        except grpc.RpcError as exc:
            raise CnntuneError(f"lost the chief oracle at {plan.options.chief}: {exc.code().name}") from None


def _oracle(plan: SearchPlan):
    import keras_tuner as kt

    kind = plan.options.tuner
    base = {
        "random": kt.oracles.RandomSearchOracle,
        "bayesian": kt.oracles.BayesianOptimizationOracle,
        "hyperband": kt.oracles.HyperbandOracle,
        "grid": kt.oracles.GridSearchOracle,
    }[kind]
    # The baselines, then the warm starts, are the oracle's first trials (ids 0, 1, ...).
    configs = [b.config for b in plan.baselines] + list(plan.strategy.warm_starts)
    oracle_class = _kt_compat.baselines_first(base, kind, is_baseline=lambda t: int(t) < len(configs),
                                              baseline_values=lambda t: configs[int(t)],
                                              stop=lambda oracle: _budget_full(plan, oracle))
    space, pins = plan.experiment.space, plan.experiment.pins
    hp = kt.HyperParameters()
    for name, value in pins.items():
        hp.Fixed(name, value)
    kwargs: dict[str, Any] = dict(
        objective=kt.Objective("val_accuracy", direction="max"), hyperparameters=hp, tune_new_entries=True,
        allow_new_entries=True, seed=int(plan.options.seed) + 1,  # Keras Tuner treats seed 0 as "no seed"
        max_consecutive_failed_trials=10**9,  # the plan's failure streak decides
    )
    if kind == "hyperband":
        kwargs["max_epochs"] = max(int(trial_config(space, pins).get("epochs", 1)), 1)
    else:
        kwargs["max_trials"] = None  # the plan's budget decides (``_budget_full``), not a cap of Keras Tuner's own
    return oracle_class(**kwargs)


def _budget_full(plan: SearchPlan, oracle) -> bool:
    """The study's budget (``tuner.store.Budget``), asked by the oracle before it proposes a trial, where it runs
    (the chief, or this process): its running searched trials are not in the study until they end, so they count
    here."""
    recorded = {r.tags.get("kt_trial_id") for r in plan.records()}
    running = sum(1 for t in oracle.ongoing_trials.values()
                  if int(t.trial_id) >= len(plan.baselines) and t.trial_id not in recorded)
    return plan.budget_spent(elsewhere=running)


def _make_tuner(plan: SearchPlan):
    _kt_compat.quiet()
    oracle = _oracle(plan)
    hypermodel = SpaceModel(plan.experiment.space, None, declare_only=True)
    plan.artifacts.root.mkdir(parents=True, exist_ok=True)
    with contextlib.redirect_stdout(io.StringIO()):  # "Reloading Tuner from ...": the API never prints
        tuner = _Tuner(plan, oracle=oracle, hypermodel=hypermodel, directory=str(plan.artifacts.root),
                       project_name=_PROJECT, overwrite=False)
    hypermodel.declare_only = False
    if plan.data is not None:
        hypermodel.spec = model_spec(plan.data, plan.experiment.options)
    if plan.worker_id is not None:
        _pause_when_idle(tuner)
    return tuner


def _pause_when_idle(tuner) -> None:
    """A worker asks again after a short pause when the oracle has no trial for it yet (Keras Tuner polls busily)."""
    import keras_tuner as kt

    create = tuner.oracle.create_trial

    def create_trial(tuner_id):
        trial = create(tuner_id)
        if trial.status == kt.engine.trial.TrialStatus.IDLE:
            time.sleep(0.5)
        return trial

    tuner.oracle.create_trial = create_trial


def _hypermodel_base():
    import keras_tuner as kt

    return kt.HyperModel


class SpaceModel:
    """A search space as a ``keras_tuner.HyperModel``: ``build(hp)`` resolves the space and builds its model.

    Args:
        space: the space module.
        spec: the ``ModelSpec`` of the data (``None`` while only declaring).
        declare_only: declare the choice points and return ``None`` (Keras Tuner's discovery of conditional
            choices builds the hypermodel several times; no model is needed for that).
    """

    def __new__(cls, *args, **kwargs):
        # Subclass keras_tuner.HyperModel lazily, so importing this module does not import Keras Tuner.
        real = type("SpaceModel", (cls, _hypermodel_base()), {})
        return object.__new__(real)

    def __init__(self, space, spec, declare_only: bool = False):
        _hypermodel_base().__init__(self, name=getattr(space, "NAME", None))
        self.space = space
        self.spec = spec
        self.declare_only = declare_only

    def build(self, hp):
        params = params_of(self.space, hp)
        if self.declare_only:
            return None
        return self.space.build(params, self.spec)


def params_of(space, hp) -> dict[str, Any]:
    """The resolved values of a space under a Keras Tuner ``HyperParameters`` (Keras Tuner's ``tuner/*`` left out)."""
    return {k: v for k, v in resolve(space, hp).items() if not k.startswith("tuner/")}


def _tuner_class():
    import keras_tuner as kt

    return kt.engine.base_tuner.BaseTuner


class _Tuner:
    """Keras Tuner's ``BaseTuner`` running each trial through the plan's objective and recording it in Optuna."""

    def __new__(cls, *args, **kwargs):
        real = type("CnntuneTuner", (cls, _tuner_class()), {})
        return object.__new__(real)

    def __init__(self, plan: SearchPlan, **kwargs):
        self.plan = plan
        _tuner_class().__init__(self, **kwargs)

    def pre_create_trial(self):
        # As under Optuna, the plan is asked after each trial: the first one always runs.
        if self.plan.ran and self.plan.should_stop():
            raise _StopSearch()

    def run_trial(self, trial, *args, **kwargs):
        import keras_tuner as kt
        import optuna

        plan = self.plan
        number = int(trial.trial_id)
        values = trial.hyperparameters.values
        warm = number - len(plan.baselines)
        if number < len(plan.baselines):
            baseline = plan.baselines[number]
            params, attrs = dict(baseline.config), dict(baseline.attrs)
        elif warm < len(plan.strategy.warm_starts):
            params, attrs = dict(plan.strategy.warm_starts[warm]), {"warm_start": warm}
        else:
            params, attrs = params_of(plan.experiment.space, trial.hyperparameters.copy()), {}
        if "tuner/epochs" in values:  # Hyperband: this round's epoch budget
            params["epochs"] = int(values["tuner/epochs"])
            attrs["kt_round"] = {k[len("tuner/"):]: values[k] for k in values if k.startswith("tuner/")}
            attrs.update(self._continuation(values))
        attrs["kt_trial_id"] = trial.trial_id
        rec = RecordingTrial(number, attrs, study=plan.study)
        try:
            value = plan.objective(rec, params, dict(attrs))
        except optuna.TrialPruned:  # stopped at the search phase's end: recorded as pruned, scored as far as it got
            self._record(optuna.trial.TrialState.PRUNED, None, rec, params)
            return {"val_accuracy": float(rec.user_attrs["val_accuracy"])}
        except KeyboardInterrupt:  # the objective recorded how each trial ended, kind and message
            self._record(optuna.trial.TrialState.FAIL, None, rec, params)
            raise
        except Exception as exc:
            self._record(optuna.trial.TrialState.FAIL, None, rec, params)
            raise kt.errors.FailedTrialError(rec.user_attrs.get("fail_reason", "")) from exc
        self._record(optuna.trial.TrialState.COMPLETE, value, rec, params)
        return {"val_accuracy": float(value)}

    def _continuation(self, values: dict[str, Any]) -> dict[str, Any]:
        """A promoted Hyperband trial continues from the model its previous round saved (when that file exists)."""
        previous = values.get("tuner/trial_id")
        initial = int(values.get("tuner/initial_epoch") or 0)
        if previous is None or initial <= 0:
            return {}
        stored = self._stored(previous)
        path = stored.model_path if stored is not None and stored.state == "complete" else None
        local = Location.of(path).local_copy(self.plan.artifacts.keras_tuner / "continued") if path else None
        if local is None:
            return {}  # nothing to continue from: this round trains from scratch
        return {"initial_epoch": initial, "continue_from": str(local), "continued_from": previous}

    def _stored(self, kt_trial_id) -> TrialRecord | None:
        """The latest trial of the study recorded for a Keras Tuner trial id."""
        for t in reversed(self.plan.study.get_trials(deepcopy=False)):
            if t.user_attrs.get("kt_trial_id") == kt_trial_id:
                return TrialRecord.from_trial(t)
        return None

    def _record(self, state, value: float | None, rec: RecordingTrial, params: dict[str, Any]) -> None:
        """Adds the finished trial to the Optuna study, with the searched values as its Optuna params."""
        import optuna

        plan = self.plan
        chosen, dists = optuna_params(plan.experiment.space, plan.experiment.pins, params)
        try:
            frozen = optuna.trial.create_trial(state=state, value=value, params=chosen, distributions=dists,
                                               user_attrs=rec.user_attrs)
        except ValueError:  # a value outside the Optuna distribution: keep the record, without params
            frozen = optuna.trial.create_trial(state=state, value=value, user_attrs=rec.user_attrs)
        plan.study.add_trial(frozen)
        if rec.user_attrs.get("fail_kind") != FailureKind.INTERRUPTED.value:
            plan.trial_finished(self._stored(rec.user_attrs["kt_trial_id"]) or TrialRecord.from_trial(frozen))

    def save_model(self, trial_id, model, step=0):
        pass  # the trial runner saves the best-epoch model itself

    def load_model(self, trial):
        import keras

        stored = self._stored(trial.trial_id)
        if stored is None or not stored.model_path:
            raise CnntuneError(f"no model recorded for Keras Tuner trial {trial.trial_id}")
        with Location.of(stored.model_path).fetched() as path:
            return keras.saving.load_model(path)


def optuna_params(space, pins, params: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The searched values of ``params`` and their Optuna distributions, exactly as the Optuna engine records them.

    Runs the space through ``OptunaHP`` on an ``optuna.trial.FixedTrial``, so both engines share one mapping.
    """
    import optuna

    names = tunable(space, pins)
    fixed = optuna.trial.FixedTrial({k: v for k, v in params.items() if k in names})
    resolve(space, OptunaHP(fixed, pins, given=params))
    return dict(fixed.params), dict(fixed.distributions)
