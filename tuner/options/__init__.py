"""The options of a search, each written once: its name, default, check, help text and stored form.

``SearchOptions`` is the one type that the command line parses into (the options of ``cnntune search``, ``worker``
and ``reproduce`` are generated from its fields), that ``tuner.search`` takes, and that a study stores as one
versioned record (``stored``, read back by ``from_meta``): workers, re-evaluation and ``reproduce`` read it back
whole. Adding an option is one field here, the code that uses it, and a test.

A field's metadata says where it belongs:

* ``stored``: part of the study's record (how it is searched); the others belong to one run (where, how long, how
  many processes);
* ``engine``: the one engine it is for; given under the other engine it is an error naming the right one;
* ``commands``: the commands that take it, and how: ``option`` (the field's default), ``override`` (``cnntune
  worker``: default the study's) or ``required``.

``None`` is cnntune's default where the default depends on other options (the default strategy: ``resolved``).
Nothing here imports Optuna or Keras.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any, Callable, Mapping

from tuner.errors import CnntuneError
from tuner.options._checks import (DEVICE_DATA, ENGINES, KERAS_TUNER, OBJECTIVES, OPTUNA, PRECISIONS, PRECISION_ALIASES,
                                   PRUNERS, SAMPLERS, TUNERS, address, bare_track, flag, flag_value, gpus, number,
                                   objective, one_of, positive, text)

__all__ = [
    "DEFAULT_HEARTBEAT_GRACE",
    "DEVICE_DATA",
    "ENGINES",
    "MAX_REEVAL_SEEDS",
    "MAX_SEED",
    "OBJECTIVES",
    "PRECISIONS",
    "PRUNERS",
    "REPRODUCE_SEEDS",
    "SAMPLERS",
    "STORED_VERSION",
    "TUNERS",
    "SearchOptions",
    "flag",
    "number",
    "option_fields",
    "option_value",
    "stored_record",
]

# The stored record's version: 1 is the ``settings`` dict of studies written before this type existed (read back by
# ``from_meta``), 2 is ``stored()``.
STORED_VERSION = 2

_ENGINE_LABEL = {OPTUNA: "an Optuna engine option", KERAS_TUNER: "a Keras Tuner engine option"}

# The default strategy (BENCHMARKS.md, "Search quality"): under Optuna's TPE, with one objective, the first searched
# trials start from the study (the study continued, then crossovers of its hand-chosen configurations), the best
# trial is grown while it costs less than the costliest baseline, and with a --timeout a quarter of it is kept to
# retrain the top configurations with new seeds, so that the pick is not one lucky run. No pruner: on the
# ``improved`` space early accuracy ranks poorly before epoch 6. No climb: in 25 minutes its steps from the best
# trial did not beat the warm starts alone. Another sampler or engine, or two objectives, gets none of these.
DEFAULT_WARM_START = 8
DEFAULT_GROW = True
# A space that names an ``UPGRADE`` (the modern space: training choices practitioners apply to any model they like)
# gets it tried on each new best trial (BENCHMARKS.md, "The modern space").
DEFAULT_UPGRADE = True
DEFAULT_CLIMB = 0.0
DEFAULT_REEVAL_SHARE = 0.25
DEFAULT_REEVAL_TOP = 3
DEFAULT_HEARTBEAT_GRACE = 90  # seconds; the storage's heartbeats (tuner.store) take it when none is given
MAX_SEED = 2**31 - 1
MAX_REEVAL_SEEDS = 3  # new seeds per configuration re-evaluated: at most this in a search, by default in best --reeval
REPRODUCE_SEEDS = 3  # seeds per baseline in reproduce

STORAGE_HELP = "Optuna storage URL (sqlite:///file.db, postgresql://..., mysql+pymysql://..., journal:PATH)."


def option(default: Any, check: Callable[[str, Any], Any], help: str, *, stored: bool = False,
           engine: str | None = None, hint: str = "", commands: Mapping[str, str] | None = None,
           short: str | None = None, cli: type | None = None, helps: Mapping[str, str] | None = None) -> Any:
    """A field of ``SearchOptions`` with its metadata (see the module's docstring).

    Args:
        default: the default (``None``: decided by ``resolved``).
        check: ``(name, value) -> value``: validates and normalizes; raises ``CnntuneError`` naming the flag.
        help: the command line's help text.
        stored: part of the study's stored record.
        engine: the engine the option belongs to; ``hint`` says what to use under the other one.
        commands: command name -> ``option``, ``override`` or ``required`` (default: ``{"search": "option"}``).
        short: a short flag (``-n``).
        cli: the type the command line parses (default: the default's type, else ``str``).
        helps: per-command help texts that replace ``help``.
    """
    return field(default=default, metadata={
        "check": check, "help": help, "stored": stored, "engine": engine, "hint": hint,
        "commands": dict(commands or {"search": "option"}), "short": short, "cli": cli, "helps": dict(helps or {}),
    })


_ALL = {"search": "option", "worker": "option", "reproduce": "option"}


@dataclass(frozen=True)
class SearchOptions:
    """How a search runs. Every field is checked when the options are made; ``resolved()`` fills in the defaults
    that depend on other options and checks how they combine.

    The fields and their help are the command line's ``cnntune search --help``.
    """

    study: str | None = option(None, text, "Study name (default: the space's name).", commands={
        "search": "option", "worker": "required", "reproduce": "option"}, helps={
        "worker": "The study to join (started by `cnntune search`).",
        "reproduce": "Study name (default reproduce-<space>; with space=all a prefix: <study>-<space>). An existing "
                     "study resumes."})
    storage: str | None = option(None, text, STORAGE_HELP, commands=_ALL)
    trials: int = option(10, number(int, 1, why="at least 1"), "Searched trials the study should hold (baselines "
                         "extra).", stored=True, short="-n")
    engine: str = option(OPTUNA, one_of(ENGINES), "optuna or keras-tuner (both record into the study).",
                         stored=True, commands={"search": "option", "worker": "override"},
                         helps={"worker": "optuna or keras-tuner (default: the study's)."})
    sampler: str | None = option(None, one_of(SAMPLERS), "Optuna engine: tpe (default), random, grid, or nsga2 "
                                 "(two objectives).", stored=True, engine=OPTUNA,
                                 hint="with --engine keras-tuner pick the tuner with --tuner random|bayesian|"
                                      "hyperband|grid")
    pruner: str | None = option(None, one_of(PRUNERS), "Optuna engine: none (default), median, asha or hyperband.",
                                stored=True, engine=OPTUNA, hint="with --engine keras-tuner use --tuner hyperband")
    tuner: str | None = option(None, one_of(TUNERS), "Keras Tuner engine: random (default), bayesian, hyperband or "
                               "grid.", stored=True, engine=KERAS_TUNER,
                               hint="add --engine keras-tuner, or pick the Optuna sampler with --sampler "
                                    "tpe|random|grid")
    # Trial n trains with seed + n, and Keras takes seeds below 2**32: half the range leaves room for 2**31 trials.
    seed: int = option(0, number(int, 0, MAX_SEED, why=f"from 0 to {MAX_SEED}"),
                       "Seeds the sampler; trial n trains with seed+n.", stored=True,
                       commands={"search": "option", "reproduce": "option"},
                       helps={"reproduce": "The first seed: the baselines train with seeds SEED .. SEED + S - 1."})
    timeout: float | None = option(None, positive,
                                   "Start no new trial after SECONDS.",
                                   commands={"search": "option", "worker": "override"},
                                   helps={"worker": "Start no new trial after SECONDS (in a study that keeps time to "
                                                    "re-evaluate, stop the running one then)."})
    baselines: bool = option(True, flag_value, "Enqueue the space's baselines as the first trials (--no-baselines: "
                             "do not).", stored=True)
    artifacts: str | None = option(None, text, "Folder or object-storage URL (s3://bucket/prefix, gs://, az://) "
                                   "for checkpoints and model files; stored with the study (default: beside the "
                                   "study store).",
                                   commands={"search": "option", "reproduce": "option"})
    track: str | None = option(None, text, "Log every trial to the MLflow tracking server at URI (a nested run per "
                               "trial, per-epoch curves, the baselines tagged); stored with the study, so its workers "
                               "log too; without URI: MLFLOW_TRACKING_URI's.", stored=True,
                               commands={"search": "option", "reproduce": "option"},
                               helps={"reproduce": "Log every run to the MLflow tracking server at URI: one parent "
                                                   "run per baseline, a nested run per seed (without URI: "
                                                   "MLFLOW_TRACKING_URI's)."})
    tensorboard: str | None = option(None, text, "Write every trial's curves and its HParams session under "
                                     "DIR/<study> for TensorBoard; stored with the study, so its workers write "
                                     "too (each on its own host).", stored=True,
                                     commands={"search": "option", "reproduce": "option"})
    skip_bad_images: bool = option(False, flag_value, "Skip unreadable image files (named in a warning) instead of "
                                   "failing.", stored=True, commands={"search": "option", "reproduce": "option"})
    max_failures: int = option(5, number(int, 0, why="0 (never stop) or more"), "Stop after N consecutive failed "
                               "trials (0: never).", stored=True, commands={"search": "option", "worker": "override"},
                               helps={"worker": "Stop after N consecutive failed trials (0: never; default: the "
                                                "study's)."})
    chief: str | None = option(None, address, "Keras Tuner engine: serve the oracle on HOST:PORT for `cnntune "
                               "worker` processes.", engine=KERAS_TUNER,
                               hint="Optuna workers share the --storage URL instead",
                               commands={"search": "option", "worker": "override"},
                               helps={"worker": "Keras Tuner engine: HOST:PORT of the chief."})
    warm_start: int | None = option(None, number(int, 0, why="0 (start-up trials drawn by the sampler) or more"),
                                    f"The first N searched trials start from the study's hand-chosen configurations "
                                    f"(default {DEFAULT_WARM_START} with TPE; 0: off).", stored=True)
    climb: float | None = option(None, number(float, 0, 1, why="a share from 0 to 1"), "Share of the trials, once "
                                 "the study continued has run, that step from the best one so far (default 0: off; "
                                 "e.g. 0.5).", stored=True)
    grow: bool | None = option(None, flag_value, "Make the best trial bigger while it costs less to train than the "
                               "costliest baseline (default: on with TPE).", stored=True)
    upgrade: bool | None = option(None, flag_value, "Try the space's UPGRADE (e.g. modern's schedule, label smoothing "
                                  "and CutMix) on each new best trial (default: on with TPE).", stored=True)
    max_epochs: int | None = option(None, number(int, 1, why="at least 1"), "With a pruner: epochs are not "
                                    "searched; every trial may train up to N (default: the space's maximum).",
                                    stored=True, engine=OPTUNA,
                                    hint="Keras Tuner's hyperband takes its maximum from the space's epochs (pin "
                                         "epochs=N)")
    reeval_share: float | None = option(None, number(float, 0, 1, below=True, why="at least 0 and below 1"),
                                        f"Share of --timeout kept to retrain the top configurations with new seeds; "
                                        f"best then picks by the mean (default {DEFAULT_REEVAL_SHARE} with TPE; 0: "
                                        f"off).", stored=True)
    reeval_top: int | None = option(None, number(int, 2, why="at least 2 (configurations to rank)"), f"How many "
                                    f"configurations the re-evaluation ranks (default {DEFAULT_REEVAL_TOP}).",
                                    stored=True)
    workers: int | None = option(None, number(int, 0, why="0 (create the study only) or more"), "Start N worker "
                                 "processes on the study and wait for them (0: create the study and run nothing).")
    gpus: str | None = option(None, gpus, "One worker per GPU: 0,1,2,3 or all (nvidia-smi -L); each sees only its "
                              "GPU.")
    trials_per_gpu: int | None = option(None, number(int, 1, why="at least 1"), "K workers per GPU of --gpus "
                                        "(default all), each with a share of its memory.")
    heartbeat_grace: float | None = option(None, number(float, 2, why="at least 2 seconds"), "Seconds without a "
                                           "heartbeat before a worker counts as dead and its trial is retried "
                                           f"(default {DEFAULT_HEARTBEAT_GRACE}).", stored=True,
                                           commands={"search": "option", "worker": "override"},
                                           helps={"worker": "Seconds without a heartbeat before a worker counts as "
                                                            "dead (default: the study's)."})
    isolate: bool = option(False, flag_value, "Run each trial in a child process: memory is returned after every "
                           "trial, a crash fails only that trial.", stored=True,
                           commands={"search": "option", "reproduce": "option"})
    objective: tuple[str, ...] | None = option(None, objective, "accuracy (default), accuracy,params or "
                                               "accuracy,latency: a two-objective study; best --max-params N picks.",
                                               stored=True, cli=str)
    allow_mixed_backends: bool = option(False, flag_value, "Add trials to a study whose completed trials trained on "
                                        "another Keras backend (KERAS_BACKEND) than this one.",
                                        commands={"search": "option", "worker": "option"})
    mixed_precision: str | None = option(None, one_of(PRECISIONS, PRECISION_ALIASES), "bfloat16 or float16: "
                                         "train under Keras's mixed-precision policy (GPUs); off (default).",
                                         stored=True, commands={"search": "option", "reproduce": "option"})
    jit: bool | None = option(None, flag_value, "Compile training steps with XLA (TensorFlow, JAX) or "
                              "torch.compile, or not (default: Keras's choice).", stored=True,
                              commands={"search": "option", "reproduce": "option"})
    device_data: str | None = option(None, one_of(DEVICE_DATA), "auto (default: on for JAX and PyTorch on a GPU), "
                                     "on or off: the data copied to the GPU once, batched there.", stored=True,
                                     commands={"search": "option", "reproduce": "option"})

    def __post_init__(self) -> None:
        for f in fields(self):
            object.__setattr__(self, f.name, f.metadata["check"](f.name, getattr(self, f.name)))

    # -- the defaults that depend on other options, and how options combine ---------------------------------------
    @property
    def default_strategy(self) -> bool:
        """Whether cnntune's benchmarked strategy applies: Optuna's TPE with one objective."""
        return self.engine == OPTUNA and self.sampler in (None, "tpe") and len(self.objective or ("accuracy",)) == 1

    def resolved(self) -> "SearchOptions":
        """The options with every default filled in.

        Raises:
            CnntuneError: options that do not combine (an option of the other engine, two objectives with a pruner,
                ``--max-epochs`` without a pruner, ...).
        """
        for f in fields(self):
            owner = f.metadata["engine"]
            if owner is not None and owner != self.engine and getattr(self, f.name) not in (None, "none"):
                raise CnntuneError(f"{flag(f.name)} is {_ENGINE_LABEL[owner]}; {f.metadata['hint']}")
        objective = self.objective or ("accuracy",)
        strategy = self.default_strategy
        values: dict[str, Any] = dict(
            objective=objective,
            warm_start=_given(self.warm_start, DEFAULT_WARM_START if strategy else 0),
            grow=_given(self.grow, DEFAULT_GROW if strategy else False),
            upgrade=_given(self.upgrade, DEFAULT_UPGRADE if strategy else False),
            climb=_given(self.climb, DEFAULT_CLIMB if strategy else 0.0),
            reeval_share=_given(self.reeval_share, DEFAULT_REEVAL_SHARE if strategy and self.timeout else 0.0),
            reeval_top=_given(self.reeval_top, DEFAULT_REEVAL_TOP),
            mixed_precision=self.mixed_precision or "float32",
            device_data=self.device_data or "auto",
        )
        if self.engine == OPTUNA:
            values.update(sampler=self.sampler or "tpe", pruner=self.pruner or "none")
            if self.max_epochs is not None and values["pruner"] == "none":
                raise CnntuneError("--max-epochs sets the most epochs a pruner lets a trial train; without a pruner, "
                                   "pin epochs=N instead")
        else:
            values.update(tuner=self.tuner or "random", sampler=None, pruner=None)
        if len(objective) > 1:
            if self.engine != OPTUNA:
                raise CnntuneError(f"--objective {','.join(objective)} is a two-objective Optuna study; drop "
                                   "--engine keras-tuner")
            if values["pruner"] != "none":
                raise CnntuneError("--pruner stops trials on validation accuracy alone, which a two-objective study "
                                   "cannot rank by; drop --pruner or --objective")
            if values["reeval_share"]:
                raise CnntuneError("--reeval-share ranks configurations by accuracy alone; with two objectives pick "
                                   "within a budget instead: cnntune best --max-params N")
        return replace(self, **values)

    # -- the stored record ------------------------------------------------------------------------------------------
    def stored(self) -> dict[str, Any]:
        """The study's record of how it is searched: the stored fields as JSON values, with the record's version."""
        values = {f.name: getattr(self, f.name) for f in fields(self) if f.metadata["stored"]}
        return {"version": STORED_VERSION, **{k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}}

    @classmethod
    def from_meta(cls, meta: Mapping[str, Any], name: str, **run: Any) -> "SearchOptions":
        """The options study ``name`` was searched with (its stored record, version 1 or 2), with this run's
        ``run`` options (study, storage, timeout, ...) on top.

        Raises:
            CnntuneError: a study that was never searched, or a record of a later version.
        """
        raw = stored_record(meta)
        if not raw:
            raise CnntuneError(f"study {name!r} has no stored search settings; start it with `cnntune search` first")
        if int(raw.get("version", 0)) > STORED_VERSION:
            raise CnntuneError(f"study {name!r} was written by a newer cnntune (search settings version "
                               f"{raw['version']}); upgrade cnntune to read it")
        stored = {f.name for f in fields(cls) if f.metadata["stored"]}
        return cls(**{k: v for k, v in raw.items() if k in stored}, **run)

    def replace(self, **changes: Any) -> "SearchOptions":
        """A copy with ``changes`` (each checked as when made).

        Raises:
            CnntuneError: an unknown option name.
        """
        names = {f.name for f in fields(self)}
        unknown = sorted(set(changes) - names)
        if unknown:
            raise CnntuneError(f"unknown option {unknown[0]!r}; valid: {', '.join(sorted(names))}")
        return replace(self, **changes)


def stored_record(meta: Mapping[str, Any]) -> dict[str, Any]:
    """A study's stored options as version 2 names them (a version-1 record converted), or ``{}`` for a study
    that stores none (a foreign study, or one made before searches stored their options)."""
    if meta.get("search"):
        return dict(meta["search"])
    if meta.get("settings"):
        return _from_version_1(meta)
    return {}


def _given(value: Any, default: Any) -> Any:
    return default if value is None else value


# What a version-1 record meant where it left a key out (it was written before that option existed).
_VERSION_1 = {"seed": 0, "baselines": True, "max_failures": 5, "warm_start": 0, "climb": 0.0, "grow": False,
              "upgrade": False, "reeval_share": 0.0, "reeval_top": 3, "isolate": False, "objective": ["accuracy"],
              "precision": "float32", "device_data": "auto"}


def _from_version_1(meta: Mapping[str, Any]) -> dict[str, Any]:
    """A version-1 record (``settings``, written before ``SearchOptions``) in version 2's names and meanings."""
    raw = {**_VERSION_1, **{k: v for k, v in dict(meta["settings"]).items() if v is not None}}
    raw["mixed_precision"] = raw.pop("precision")
    raw.setdefault("skip_bad_images", bool(meta.get("skip_bad_images", False)))
    return {**raw, "version": 1}


def option_value(name: str, value: Any) -> Any:
    """``value`` checked and normalized as option ``name`` is (``None``: not given).

    Raises:
        CnntuneError: a bad value, named by its flag.
    """
    return _FIELDS[name].metadata["check"](name, value)


def option_fields(command: str) -> list[tuple[Any, str]]:
    """The fields a command takes, with how it takes each (``option``, ``override``, ``required``), in order."""
    return [(f, f.metadata["commands"][command]) for f in fields(SearchOptions) if command in f.metadata["commands"]]


_FIELDS = {f.name: f for f in fields(SearchOptions)}
