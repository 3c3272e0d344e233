"""The Keras Tuner engine: the same spaces searched by Keras Tuner 1.4's tuners, recorded in the Optuna study.

A space is already written in the Keras Tuner vocabulary, so ``SpaceModel`` (a ``keras_tuner.HyperModel``) hands
Keras Tuner's own ``HyperParameters`` to ``space.declare``. Pins are pre-registered as ``hp.Fixed`` (with
``tune_new_entries=True`` for the rest); the space's baselines are the oracle's first trials (trial ids ``0..B-1``,
whatever the tuner), so every study measures them with the searched trials. Each finished trial is recorded as an
Optuna trial with the same user attributes as the Optuna engine plus ``engine='keras-tuner'``: the Optuna storage
stays the single system of record, and ``cnntune trials`` / ``best --export`` work whatever engine ran.
Keras Tuner's project folder (its oracle state, for resuming) lives in the study's artifacts folder.

Distributed: the chief serves the oracle over gRPC (``KERASTUNER_TUNER_ID=chief``); each worker runs trials until
the oracle answers ``STOPPED``, then exits; the chief exits once every worker has been told to stop and no trial
is running (or, when a worker died, ``CHIEF_GRACE`` seconds after the last trial ended).
"""

from __future__ import annotations

import contextlib
import io
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from tuner._errors import CnntuneError
from tuner.hp import resolve

__all__ = ["TUNERS", "KTPlan", "check_options", "parse_address", "search", "wait_for_chief"]

TUNERS = ("random", "bayesian", "hyperband", "grid")
# Seconds the chief keeps serving after the last trial ended while a worker it knows never asked again.
CHIEF_GRACE = 30.0
# Seconds a worker waits for the chief (to start, or to answer) before giving up.
CHIEF_TIMEOUT = 600
_PROJECT = "keras_tuner"


def parse_address(address: str) -> tuple[str, int]:
    """``HOST:PORT`` -> ``(host, port)``.

    Raises:
        CnntuneError: not ``HOST:PORT`` with a port in 1..65535.
    """
    host, sep, port = str(address).rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise CnntuneError(f"--chief needs HOST:PORT, e.g. 0.0.0.0:8000. Received: {address}")
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


def check_options(tuner: str, *, chief: str | None, pruner: str = "none") -> None:
    """Checks the Keras Tuner options before any work is done.

    Raises:
        CnntuneError: unknown tuner, a pruner (Optuna only), or a malformed chief address.
    """
    if tuner not in TUNERS:
        raise CnntuneError(f"unknown tuner {tuner!r}; valid: {', '.join(TUNERS)}")
    if pruner != "none":
        raise CnntuneError("--pruner is an Optuna engine option; with --engine keras-tuner use --tuner hyperband")
    if chief is not None:
        parse_address(chief)


@dataclass
class KTPlan:
    """Everything the Keras Tuner engine needs; built by the API layer.

    Attributes:
        study: the Optuna study trials are recorded in.
        exp: the experiment (space, data, pins).
        objective: ``objective(trial, params, attrs) -> val_accuracy``, the same function the Optuna engine runs;
            ``trial`` here is a ``RecordingTrial``.
        tuner: ``random``, ``bayesian``, ``hyperband`` or ``grid``.
        seed: seeds the oracle; trial ``n`` trains with seed ``seed + n``.
        trials: searched trials (baselines are extra).
        baselines: the space's baselines to run first (empty: none).
        directory: the study's artifacts folder; Keras Tuner's project lives in ``directory/keras_tuner``.
        max_failures: stop after this many consecutive failed trials (0: never).
        chief: ``HOST:PORT`` of the chief oracle (distributed), else ``None``.
        worker_id: this process is a worker with this id (needs ``chief``), else it is the chief or local.
        display: receives progress.
        data: the loaded dataset (for the hypermodel's ``ModelSpec``).
    """

    study: Any
    exp: Any
    objective: Callable[[Any, dict[str, Any], dict[str, Any]], float]
    tuner: str
    seed: int
    trials: int
    baselines: Sequence[Any] = ()
    directory: Path = Path(".")
    max_failures: int = 5
    chief: str | None = None
    worker_id: str | None = None
    display: Any = None
    data: Any = None
    configs: list[dict[str, Any]] = field(default_factory=list)


class RecordingTrial:
    """Stands in for an Optuna trial while Keras Tuner runs one: collects user attributes, never prunes."""

    def __init__(self, number: int, user_attrs: dict[str, Any] | None = None):
        self.number = number
        self.user_attrs: dict[str, Any] = dict(user_attrs or {})

    def set_user_attr(self, key: str, value: Any) -> None:
        self.user_attrs[key] = value

    def report(self, value: float, step: int) -> None:
        pass

    def should_prune(self) -> bool:
        return False


@contextlib.contextmanager
def _kt_environment(plan: KTPlan) -> Iterator[None]:
    """Sets ``KERASTUNER_*`` for the chief or a worker (Keras Tuner reads them), and restores them after."""
    names = ("KERASTUNER_TUNER_ID", "KERASTUNER_ORACLE_IP", "KERASTUNER_ORACLE_PORT")
    saved = {n: os.environ.get(n) for n in names}
    for n in names:
        os.environ.pop(n, None)
    if plan.chief is not None:
        host, port = parse_address(plan.chief)
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


def search(plan: KTPlan) -> None:
    """Runs a Keras Tuner search: locally, as the chief (serves the oracle) or as a worker (runs trials).

    Raises:
        CnntuneError: ``max_failures`` consecutive failed trials, a chief that cannot listen or cannot be reached.
    """
    from tuner.engines._optuna import trial_config

    plan.configs = [trial_config(plan.exp.space, plan.exp.pins, b.params) for b in plan.baselines]
    if plan.worker_id is not None and plan.chief is None:
        raise CnntuneError("a Keras Tuner worker needs --chief HOST:PORT")
    with _kt_environment(plan):
        tuner = _make_tuner(plan)
        if plan.chief is not None and plan.worker_id is None:
            _serve(tuner, plan.chief)
            return
        _run(tuner, plan)


def _run(tuner, plan: KTPlan) -> None:
    """The trial loop of a local search or a worker."""
    import grpc

    display = plan.display
    display.search_begin(study=plan.study.study_name, space=plan.exp.space_name, data=plan.exp.data.label(),
                         trials=plan.trials, baselines=len(plan.baselines))
    try:
        tuner.search(verbose=0)
    except RuntimeError as exc:
        if "consecutive failures" in str(exc):
            raise CnntuneError(
                f"search stopped: {plan.max_failures} consecutive trials failed (last: "
                f"{getattr(tuner, 'last_failure', None) or 'no reason recorded'}); fix the cause or raise --max-failures"
            ) from None
        raise
    except grpc.RpcError as exc:
        raise CnntuneError(f"lost the chief oracle at {plan.chief}: {exc.code().name}") from None
    finally:
        display.search_end()


def _oracle_class(kind: str):
    """The oracle class of a tuner, with the space's baselines served first."""
    import keras_tuner as kt

    base = {
        "random": kt.oracles.RandomSearchOracle,
        "bayesian": kt.oracles.BayesianOptimizationOracle,
        "hyperband": kt.oracles.HyperbandOracle,
        "grid": kt.oracles.GridSearchOracle,
    }[kind]

    class BaselinesFirst(base):
        """Trial ids ``0..B-1`` are the baselines, in order; then the tuner's own choices.

        Stateless (the id alone decides), so a reloaded project never replays a baseline.
        """

        cnntune_baselines: list[dict[str, Any]] = []

        def _is_baseline(self, trial_id) -> bool:
            return int(trial_id) < len(self.cnntune_baselines)

        def populate_space(self, trial_id):
            if self._is_baseline(trial_id):
                space = {hp.name for hp in self.get_space().space}
                values = {k: v for k, v in self.cnntune_baselines[int(trial_id)].items() if k in space}
                return {"status": "RUNNING", "values": values}
            if kind != "grid":
                return super().populate_space(trial_id)
            # The grid oracle starts its walk at the first trial it sees; hide the baselines from it.
            saved = self.start_order
            self.start_order = [t for t in saved if not self._is_baseline(t)]
            try:
                return super().populate_space(trial_id)
            finally:
                self.start_order = saved + [t for t in self.start_order if t not in saved]

        def end_trial(self, trial):
            super().end_trial(trial)
            if kind == "grid" and self._is_baseline(trial.trial_id):
                self._populate_next = [t for t in self._populate_next if t != trial.trial_id]

    return BaselinesFirst


def _make_tuner(plan: KTPlan):
    import keras_tuner as kt
    from keras_tuner.src import config as kt_config
    from keras_tuner.src.distribute import oracle_client

    from tuner.runner import model_spec

    oracle_client.TIMEOUT = CHIEF_TIMEOUT
    kt_config.DEBUG = False  # else Keras Tuner prints every failed trial's traceback; the study keeps the reason
    space, pins = plan.exp.space, plan.exp.pins
    if plan.tuner == "grid":
        from tuner.engines._optuna import grid_values

        grid_values(space, pins, option="--tuner grid")  # a continuous choice cannot be walked
    hp = kt.HyperParameters()
    for name, value in pins.items():
        hp.Fixed(name, value)
    total = plan.trials + len(plan.baselines)
    kwargs: dict[str, Any] = dict(
        objective=kt.Objective("val_accuracy", direction="max"), hyperparameters=hp, tune_new_entries=True,
        allow_new_entries=True, seed=int(plan.seed) + 1,  # Keras Tuner treats seed 0 as "no seed"
        max_consecutive_failed_trials=plan.max_failures or 10**9,
    )
    if plan.tuner == "hyperband":
        kwargs["max_epochs"] = max(int(_defaults(space, pins).get("epochs", 1)), 1)
    else:
        kwargs["max_trials"] = total
    oracle = _oracle_class(plan.tuner)(**kwargs)
    oracle.cnntune_baselines = plan.configs
    # Caps every tuner, Hyperband included, at the study's budget.
    oracle.max_trials = total
    hypermodel = SpaceModel(space, None, declare_only=True)
    plan.directory.mkdir(parents=True, exist_ok=True)
    with contextlib.redirect_stdout(io.StringIO()):  # "Reloading Tuner from ...": the API never prints
        tuner = _Tuner(plan, oracle=oracle, hypermodel=hypermodel, directory=str(plan.directory),
                       project_name=_PROJECT, overwrite=False)
    oracle.max_trials = total
    hypermodel.declare_only = False
    hypermodel.spec = model_spec(plan.data, plan.exp.options) if plan.data is not None else None
    if plan.worker_id is not None:
        _pause_when_idle(tuner)
    return tuner


def _defaults(space, pins) -> dict[str, Any]:
    from tuner.engines._optuna import trial_config

    return trial_config(space, pins)


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
    """Keras Tuner's ``BaseTuner`` running each trial with cnntune's trial runner and recording it in Optuna."""

    def __new__(cls, *args, **kwargs):
        real = type("CnntuneTuner", (cls, _tuner_class()), {})
        return object.__new__(real)

    def __init__(self, plan: KTPlan, **kwargs):
        self.plan = plan
        _tuner_class().__init__(self, **kwargs)

    def run_trial(self, trial, *args, **kwargs):
        import keras_tuner as kt
        import optuna

        plan = self.plan
        number = int(trial.trial_id)
        baseline = plan.baselines[number] if number < len(plan.baselines) else None
        values = trial.hyperparameters.values
        if baseline is not None:
            params = dict(plan.configs[number])
            attrs = {"baseline": baseline.name, "reported": baseline.reported}
        else:
            params = params_of(plan.exp.space, trial.hyperparameters.copy())
            attrs = {}
        if "tuner/epochs" in values:  # Hyperband: this round's epoch budget
            params["epochs"] = int(values["tuner/epochs"])
            attrs["kt_round"] = {k[len("tuner/"):]: values[k] for k in values if k.startswith("tuner/")}
        attrs["kt_trial_id"] = trial.trial_id
        rec = RecordingTrial(number, attrs)
        try:
            value = plan.objective(rec, params, dict(attrs))
        except KeyboardInterrupt:
            rec.user_attrs.setdefault("fail_reason", "interrupted")
            self._record(optuna.trial.TrialState.FAIL, None, rec, params)
            raise
        except Exception as exc:
            if "fail_reason" not in rec.user_attrs:
                rec.set_user_attr("fail_reason", f"{type(exc).__name__}: {exc}"[:500])
            self._record(optuna.trial.TrialState.FAIL, None, rec, params)
            self.last_failure = f"trial {number}: {rec.user_attrs['fail_reason']}"
            raise kt.errors.FailedTrialError(rec.user_attrs["fail_reason"]) from exc
        self._record(optuna.trial.TrialState.COMPLETE, value, rec, params)
        return {"val_accuracy": float(value)}

    def _record(self, state, value: float | None, rec: RecordingTrial, params: dict[str, Any]) -> None:
        """Adds the finished trial to the Optuna study, with the searched values as its Optuna params."""
        import optuna

        from tuner.records import TrialRecord

        plan = self.plan
        chosen, dists = optuna_params(plan.exp.space, plan.exp.pins, params)
        try:
            frozen = optuna.trial.create_trial(state=state, value=value, params=chosen, distributions=dists,
                                               user_attrs=rec.user_attrs)
        except ValueError:  # a value outside the Optuna distribution: keep the record, without params
            frozen = optuna.trial.create_trial(state=state, value=value, user_attrs=rec.user_attrs)
        plan.study.add_trial(frozen)
        if plan.display is not None:
            record = TrialRecord.from_trial(frozen)
            record.number = rec.number
            plan.display.trial_end(record)

    def save_model(self, trial_id, model, step=0):
        pass  # the trial runner saves the best-epoch model itself

    def load_model(self, trial):
        import keras

        for t in self.plan.study.get_trials(deepcopy=False):
            if t.user_attrs.get("kt_trial_id") == trial.trial_id and t.user_attrs.get("model_path"):
                return keras.saving.load_model(t.user_attrs["model_path"])
        raise CnntuneError(f"no model recorded for Keras Tuner trial {trial.trial_id}")


def optuna_params(space, pins, params: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The searched values of ``params`` and their Optuna distributions, exactly as the Optuna engine records them.

    Runs the space through ``OptunaHP`` on an ``optuna.trial.FixedTrial``, so both engines share one mapping.
    """
    import optuna

    from tuner.engines._optuna import OptunaHP, tunable

    names = tunable(space, pins)
    fixed = optuna.trial.FixedTrial({k: v for k, v in params.items() if k in names})
    resolve(space, OptunaHP(fixed, pins, given=params))
    return dict(fixed.params), dict(fixed.distributions)


def _serve(tuner, address: str) -> None:
    """Serves the oracle until the search is done and every worker has been told to stop.

    Keras Tuner's own ``start_server`` polls every 20 s and never exits while a worker it once saw has not asked
    again (a worker killed mid-search keeps the chief alive forever); this loop polls every 0.2 s and gives a lost
    worker ``CHIEF_GRACE`` seconds.
    """
    from concurrent import futures

    import grpc
    from keras_tuner.src import protos
    from keras_tuner.src.distribute import oracle_chief

    oracle = tuner.oracle
    tuner.save()
    host, port = parse_address(address)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    servicer = oracle_chief.OracleServicer(oracle)
    protos.get_service_grpc().add_OracleServicer_to_server(servicer, server)
    try:
        bound = server.add_insecure_port(f"{host}:{port}")
    except RuntimeError:
        bound = 0
    if not bound:
        raise CnntuneError(f"the chief cannot listen on {address}; is the port in use?")
    server.start()
    quiet_since: float | None = None
    try:
        while True:
            time.sleep(0.2)
            if not servicer.stop_triggered or oracle.ongoing_trials:
                quiet_since = None
                continue
            if not oracle.tuner_ids:
                break
            quiet_since = quiet_since or time.monotonic()
            if time.monotonic() - quiet_since > CHIEF_GRACE:
                break
    finally:
        server.stop(grace=1.0)
        tuner.save()
