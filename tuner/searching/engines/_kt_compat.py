"""Every use of Keras Tuner's private modules and oracle internals, in one place (Keras Tuner 1.4).

Keras Tuner's public API has no hook for three things cnntune needs, so they reach into it here and nowhere else:

* quieting it: ``keras_tuner.src.config.DEBUG`` (else it prints every failed trial's traceback) and the gRPC client
  timeout ``keras_tuner.src.distribute.oracle_client.TIMEOUT``;
* serving the oracle with a chief that exits: ``keras_tuner.src.distribute.oracle_chief.OracleServicer`` and
  ``keras_tuner.src.protos`` with the servicer's ``stop_triggered`` and the oracle's ``ongoing_trials`` and
  ``tuner_ids`` (Keras Tuner's own ``start_server`` never exits while a worker it once saw has not asked again);
* serving the baselines first from the grid oracle, whose walk is kept in ``start_order`` and ``_populate_next``.

A Keras Tuner upgrade that moves any of these breaks this module only.
"""

from __future__ import annotations

import time
from typing import Any, Callable

from tuner.errors import CnntuneError

__all__ = ["CHIEF_GRACE", "CHIEF_TIMEOUT", "baselines_first", "quiet", "serve"]

# Seconds the chief keeps serving after the last trial ended while a worker it knows never asked again.
CHIEF_GRACE = 30.0
# Seconds a worker waits for the chief (to start, or to answer) before giving up.
CHIEF_TIMEOUT = 600


def quiet() -> None:
    """Keras Tuner prints no tracebacks (the study keeps each failed trial's reason) and a worker waits up to
    ``CHIEF_TIMEOUT`` seconds for the chief's answers."""
    from keras_tuner.src import config as kt_config
    from keras_tuner.src.distribute import oracle_client

    oracle_client.TIMEOUT = CHIEF_TIMEOUT
    kt_config.DEBUG = False


def baselines_first(base: type, kind: str, is_baseline: Callable[[Any], bool],
                    baseline_values: Callable[[Any], dict[str, Any]], stop: Callable[[Any], bool]) -> type:
    """A subclass of the oracle class ``base`` that serves the baselines as its first trials and stops when ``stop``
    says so (the study's budget, instead of the oracle's own ``max_trials``).

    Stateless (the trial id alone decides), so a reloaded project never replays a baseline.

    Args:
        base: a Keras Tuner oracle class.
        kind: the tuner's name (``grid`` needs its walk kept clear of the baselines).
        is_baseline: ``trial_id -> bool``.
        baseline_values: ``trial_id -> values`` of that baseline.
        stop: ``oracle -> bool``, asked before each new trial that is not a baseline: ``True`` answers ``STOPPED``.
    """

    class BaselinesFirst(base):
        def populate_space(self, trial_id):
            if not is_baseline(trial_id) and stop(self):
                return {"status": "STOPPED"}
            if is_baseline(trial_id):
                space = {hp.name for hp in self.get_space().space}
                values = {k: v for k, v in baseline_values(trial_id).items() if k in space}
                return {"status": "RUNNING", "values": values}
            if kind != "grid":
                return super().populate_space(trial_id)
            # The grid oracle starts its walk at the first trial it sees; hide the baselines from it.
            saved = self.start_order
            self.start_order = [t for t in saved if not is_baseline(t)]
            try:
                return super().populate_space(trial_id)
            finally:
                self.start_order = saved + [t for t in self.start_order if t not in saved]

        def end_trial(self, trial):
            super().end_trial(trial)
            if kind == "grid" and is_baseline(trial.trial_id):
                self._populate_next = [t for t in self._populate_next if t != trial.trial_id]

    return BaselinesFirst


def serve(tuner, host: str, port: int, address: str) -> None:
    """Serves ``tuner``'s oracle until the search is done and every worker has been told to stop.

    Polls every 0.2 s and gives a lost worker ``CHIEF_GRACE`` seconds.

    Raises:
        CnntuneError: the address cannot be listened on.
    """
    from concurrent import futures

    import grpc
    from keras_tuner.src import protos
    from keras_tuner.src.distribute import oracle_chief

    oracle = tuner.oracle
    tuner.save()
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
