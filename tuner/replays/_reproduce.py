"""``reproduce``: replay the study's hand-chosen configurations over several seeds and check its conclusions.

Every baseline of a space (of every space with ``space=all``) is trained with seeds ``seed .. seed + seeds - 1``.
Each run is a trial of the study ``reproduce-<space>`` tagged ``reproduce: true``, ``baseline: NAME`` and
``seed: N``, so an interrupted reproduction resumes: rerunning the same command trains only the (baseline, seed)
pairs the store does not hold yet. The result has one row per baseline (the study's reported test accuracy, the
measured mean and spread) and one line per claim of the study (``CLAIMS`` of each space) saying whether the
ordering held on the measured means. Nothing here prints.
"""

from __future__ import annotations

import csv
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from search_spaces import SPACES, get_space
from tuner.errors import CnntuneError, SpaceError
from tuner.experiment import DATA_KEYS, OPTION_KEYS, load_data, parse_words, split_words, trial_config
from tuner.hp import describe
from tuner.options import REPRODUCE_SEEDS, SearchOptions
from tuner.records import Display, TrialRecord
from tuner.replays._replay import ReplayRun, run_replays
from tuner.store import (Artifacts, DEFAULT_STORAGE, SeedStats, check_same_experiment, create_or_load_study, diff_se,
                         is_done, jsonable, new_meta, open_storage, read_records, redact, seed_stats, study_meta,
                         study_names, write_meta)
from tuner.tracking import tracked
from tuner.trial import Runner

__all__ = [
    "ALL",
    "ClaimResult",
    "Reproduction",
    "ReproRow",
    "SpaceReproduction",
    "check_claims",
    "check_out_dir",
    "reproduce",
    "summarize",
    "write_reproduction",
]

ALL = "all"
HELD, NOT_HELD, UNTESTABLE = "held", "not held", "untestable"


@dataclass(kw_only=True)
class ReproRow(SeedStats):
    """One baseline: the study's number against the measured runs (accuracies in percent).

    The run statistics (``runs``, ``diverged``, means and spreads, ``seeds``, ``trials``) are ``SeedStats``'s.

    Attributes:
        space: the space the baseline belongs to.
        baseline: its name.
        reported: the study's test accuracy (one run), or ``None``.
        diff_pp: ``test_mean - reported`` in percentage points.
    """

    space: str
    baseline: str
    reported: float | None
    diff_pp: float | None


@dataclass
class ClaimResult:
    """One conclusion of the study checked on the measured means.

    Attributes:
        status: ``held``, ``not held`` or ``untestable`` (``why`` says why).
        diff_pp: measured ``better - worse`` test means in percentage points.
        se_pp: standard error of that difference, when both sides have two runs or more.
    """

    space: str
    text: str
    better: str
    worse: str
    better_reported: float | None
    worse_reported: float | None
    better_mean: float | None
    worse_mean: float | None
    status: str
    diff_pp: float | None = None
    se_pp: float | None = None
    why: str = ""


@dataclass
class SpaceReproduction:
    """The reproduction of one space."""

    space: str
    study: str
    data: dict[str, Any]
    pins: dict[str, Any]
    rows: list[ReproRow]
    claims: list[ClaimResult]
    ran: list[TrialRecord] = field(default_factory=list)


@dataclass
class Reproduction:
    """What ``reproduce`` returns: one part per space, plus the run settings."""

    label: str
    storage: str
    seeds: list[int]
    spaces: list[SpaceReproduction]

    @property
    def rows(self) -> list[ReproRow]:
        return [row for part in self.spaces for row in part.rows]

    @property
    def claims(self) -> list[ClaimResult]:
        return [claim for part in self.spaces for claim in part.claims]

    @property
    def ran(self) -> list[TrialRecord]:
        return [rec for part in self.spaces for rec in part.ran]


# -- pure parts (tested with planted numbers) ------------------------------------------------------------------
def summarize(space_name: str, baselines: Sequence[Any], records: Sequence[TrialRecord], seeds: Sequence[int],
              configs: Mapping[str, Mapping[str, Any]] | None = None) -> list[ReproRow]:
    """One row per baseline from the reproduction trials of a study.

    Only runs of the requested seeds count, one per (baseline, seed) (the earliest finished one), and, when
    ``configs`` is given, only runs whose stored configuration is the baseline's current one (a changed space
    definition must not reuse stale numbers).

    Args:
        space_name: for the rows.
        baselines: the space's ``Baseline`` objects, in table order.
        records: the study's trials.
        seeds: the seeds asked for.
        configs: each baseline's resolved configuration (JSON form).
    """
    wanted = set(int(s) for s in seeds)
    rows = []
    for b in baselines:
        runs = [r for r in records if r.tags.get("reproduce") and r.baseline == b.name
                and (configs is None or r.params == configs.get(b.name))]
        stats = seed_stats(runs, sorted(wanted))
        rows.append(ReproRow(
            space=space_name, baseline=b.name, reported=b.reported,
            diff_pp=None if stats.test_mean is None or b.reported is None else stats.test_mean - float(b.reported),
            **asdict(stats),
        ))
    return rows


def check_claims(space_name: str, claims: Sequence[Any], rows: Sequence[ReproRow],
                 configs: Mapping[str, Mapping[str, Any]] | None = None) -> list[ClaimResult]:
    """Each claim as held / not held on the measured mean test accuracies, or untestable.

    A claim is untestable when a side has no completed run, or when the pins made both configurations the same
    (``epochs=1`` turns "20 epochs beat 5" into a comparison of a config with itself).

    Args:
        space_name: for the results.
        claims: ``Claim`` objects (``better``, ``worse``, ``text``).
        rows: the space's rows from ``summarize``.
        configs: each baseline's resolved configuration, to detect claims the pins made empty.
    """
    by_name = {row.baseline: row for row in rows}
    out = []
    for claim in claims:
        better, worse = by_name.get(claim.better), by_name.get(claim.worse)
        result = ClaimResult(
            space=space_name, text=claim.text, better=claim.better, worse=claim.worse,
            better_reported=better.reported if better else None, worse_reported=worse.reported if worse else None,
            better_mean=better.test_mean if better else None, worse_mean=worse.test_mean if worse else None,
            status=UNTESTABLE,
        )
        if better is None or worse is None:
            result.why = f"unknown baseline {claim.better if better is None else claim.worse!r}"
        elif configs is not None and configs.get(claim.better) == configs.get(claim.worse):
            result.why = "the pins make both configs identical"
        elif better.test_mean is None or worse.test_mean is None:
            result.why = "no completed run of " + (claim.better if better.test_mean is None else claim.worse)
        else:
            result.diff_pp = better.test_mean - worse.test_mean
            result.se_pp = diff_se(better.test_std, better.runs, worse.test_std, worse.runs)
            result.status = HELD if result.diff_pp > 0 else NOT_HELD
            if result.se_pp is not None and abs(result.diff_pp) < 2 * result.se_pp:
                result.why = "within noise: |diff| < 2 SE"
            elif result.se_pp is None:
                result.why = "one run per side: use --seeds 3 or more to judge noise"
        out.append(result)
    return out


# -- the command -------------------------------------------------------------------------------------------------
def _space_words(kv: Mapping[str, str]) -> tuple[list[str], dict[str, str]]:
    """Splits ``key=value`` words (without ``space``) into data words and pins."""
    data = [f"{k}={v}" for k, v in kv.items() if k in DATA_KEYS]
    pins = {k: v for k, v in kv.items() if k not in DATA_KEYS}
    return data, pins


def _plan(words: Sequence[str]) -> tuple[str, list[tuple[str, list[str]]]]:
    """``(label, [(space name, words for that space), ...])``; ``space=all`` gives every space its known pins.

    Raises:
        SpaceError: no space, an unknown space, a space without baselines, a pin no space knows.
    """
    kv = split_words(words)
    name = kv.pop("space", None)
    if not name:
        raise SpaceError(f"say which space to reproduce with space=NAME or space=all; valid: {', '.join(SPACES)}")
    data, pins = _space_words(kv)
    if name != ALL:
        try:
            module = get_space(name)
        except SpaceError as exc:
            raise SpaceError(f"{exc}; reproduce also takes space=all") from None
        if not module.BASELINES:
            raise SpaceError(f"space {name!r} has no baselines to reproduce")
        return module.NAME, [(module.NAME, [f"space={name}", *data, *(f"{k}={v}" for k, v in pins.items())])]
    # With every space, a pin applies to the spaces that have that choice point (epochs=1 applies to all of them),
    # and a run option (weights=) to the spaces that read options.
    known = {space: set(describe(module)) | (set(OPTION_KEYS) if hasattr(module, "check_options") else set())
             for space, module in SPACES.items()}
    unknown = sorted(k for k in pins if not any(k in keys for keys in known.values()))
    if unknown:
        raise SpaceError(f"unknown key {unknown[0]!r}: no space has it; see `cnntune spaces NAME` for each space's keys")
    plan = [(space, [f"space={space}", *data, *(f"{k}={v}" for k, v in pins.items() if k in keys)])
            for space, keys in known.items() if SPACES[space].BASELINES]
    return ALL, plan


def check_out_dir(out: str | Path | None) -> Path:
    """The folder ``write_reproduction`` writes to, checked before any training.

    Raises:
        CnntuneError: the folder does not exist.
    """
    folder = Path(out or ".").expanduser()
    if not folder.is_dir():
        raise CnntuneError(f"--out folder {folder} does not exist; create it or pick another")
    return folder


def reproduce(
    words: Sequence[str],
    options: SearchOptions | None = None,
    *,
    seeds: int = REPRODUCE_SEEDS,
    display: Display | None = None,
    runner: Runner | None = None,
) -> Reproduction:
    """Trains every baseline of a space (or of all spaces) with several seeds; resumes an interrupted run.

    Args:
        words: ``key=value`` words: ``space=NAME`` or ``space=all``, data keys, pins (``epochs=1``).
        options: the options of ``cnntune reproduce`` (``tuner.options.SearchOptions``): ``seed`` (the first seed),
            ``study`` (default ``reproduce-<space>``; with ``space=all`` a prefix: ``<study>-<space>``),
            ``storage``, ``artifacts``, ``skip_bad_images`` (a resumed study keeps the value it was created with)
            and how trials train (``isolate``, ``mixed_precision``, ``jit``, ``device_data``); stored with each
            study, as a search's are.
        seeds: seeds per baseline (``seed .. seed + seeds - 1``); every baseline gets the same seeds.
        display: receives progress; default shows nothing.
        runner: trains one configuration; default ``tuner.trial.run_trial``.

    Returns:
        A ``Reproduction``: per space, one row per baseline and the study's claims checked on the measured means.

    Raises:
        CnntuneError: bad words, ``seeds < 1``, a study holding another space/data/pins, missing data.
    """
    display = display or Display()
    options = (options or SearchOptions()).resolved()
    if seeds < 1:
        raise CnntuneError(f"--seeds must be at least 1. Received: {seeds}")
    label, plan = _plan(words)
    url = options.storage or DEFAULT_STORAGE
    store = open_storage(url)
    seed_list = [int(options.seed) + i for i in range(int(seeds))]
    parts = []
    for space_name, space_words in plan:
        default = f"reproduce-{space_name}"
        name = default if not options.study else (options.study if label != ALL else f"{options.study}-{space_name}")
        parts.append(_reproduce_space(space_words, name, url, store, seed_list, options, display=display,
                                      runner=runner))
    return Reproduction(label=label, storage=redact(url), seeds=seed_list, spaces=parts)


def _reproduce_space(words: list[str], name: str, url: str, store, seeds: list[int], options: SearchOptions, *,
                     display: Display, runner: Runner | None) -> SpaceReproduction:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    exp = parse_words(words)
    meta: dict[str, Any] = {}
    records: list[TrialRecord] = []
    if name in study_names(store):
        existing = optuna.load_study(study_name=name, storage=store)
        meta = study_meta(existing)
        if meta:
            check_same_experiment(name, meta, exp)
        records = read_records(existing, url=url)
    if meta.get("skip_bad_images"):  # a study created with it keeps it
        options = options.replace(skip_bad_images=True)
    baselines = list(exp.space.BASELINES)
    configs = {b.name: jsonable(trial_config(exp.space, exp.pins, b.params)) for b in baselines}
    done = {(r.baseline, r.seed) for r in records
            if r.tags.get("reproduce") and is_done(r) and r.params == configs.get(r.baseline)}
    # Seed-major order: an interrupted run already holds one run of every baseline, not all seeds of a few.
    missing = [(b, s) for s in seeds for b in baselines if (b.name, s) not in done]
    ran: list[TrialRecord] = []
    if missing:
        art = Artifacts.of(meta, url, name, options.artifacts).check()  # before the data is loaded
        # MLflow (one parent run per baseline, a nested run per seed) and TensorBoard, when asked for.
        display = tracked(display, track=options.track, tensorboard=options.tensorboard, study=name,
                          role="reproduce", defaults=trial_config(exp.space, exp.pins))
        data = load_data(exp, skip_bad_images=options.skip_bad_images)
        # The sampler is never consulted (runs are not sampled); random keeps create_study cheap and seedless.
        study_obj = create_or_load_study(store, name, sampler=optuna.samplers.RandomSampler())
        if not meta or meta.get("search") != options.stored():
            # How this reproduction's runs train, as a search stores its options (``best --reeval`` reads them).
            meta = meta or new_meta(exp, data, art.files.where, skip_bad_images=options.skip_bad_images)
            meta["search"] = options.stored()
            write_meta(study_obj, meta)
        runs = [ReplayRun(configs[b.name], s, {"reproduce": True, "baseline": b.name, "reported": b.reported})
                for b, s in missing]
        display.search_begin(study=name, space=exp.space_name, data=exp.data.label(), trials=len(runs), baselines=0)
        try:
            ran = run_replays(study_obj, exp, data, art, runs, display, runner, options)
        finally:
            display.search_end()
        records = read_records(study_obj, url=url)
    rows = summarize(exp.space_name, baselines, records, seeds, configs)
    claims = check_claims(exp.space_name, exp.space.CLAIMS, rows, configs)
    return SpaceReproduction(space=exp.space_name, study=name, data=exp.data.to_dict(), pins=jsonable(exp.pins),
                             rows=rows, claims=claims, ran=ran)


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    return round(value, 3) if isinstance(value, float) else value


def write_reproduction(result: Reproduction, out: str | Path | None = None) -> list[Path]:
    """Writes the rows as ``reproduce_<space>.csv`` and rows + claims as ``reproduce_<space>.json``.

    Args:
        result: what ``reproduce`` returned.
        out: the folder; default the working directory.

    Returns:
        The two paths written.
    """
    folder = check_out_dir(out)
    csv_path = folder / f"reproduce_{result.label}.csv"
    json_path = folder / f"reproduce_{result.label}.json"
    columns = ["space", "baseline", "reported", "runs", "diverged", "val_mean", "val_std", "test_mean", "test_std",
               "diff_pp", "seeds", "trials"]
    with csv_path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        for row in result.rows:
            values = asdict(row)
            values["seeds"] = " ".join(str(s) for s in row.seeds)
            values["trials"] = " ".join(str(t) for t in row.trials)
            writer.writerow({k: _cell(values[k]) for k in columns})
    payload = {
        "storage": result.storage,
        "seeds": result.seeds,
        "units": "accuracy in percent; diff_pp = test_mean - reported",
        "studies": [{"space": p.space, "study": p.study, "data": p.data, "pins": p.pins} for p in result.spaces],
        "rows": [asdict(row) for row in result.rows],
        "claims": [asdict(claim) for claim in result.claims],
    }
    json_path.write_text(json.dumps(payload, indent=2))
    return [csv_path, json_path]
