"""Benchmark: how much better than the hand-chosen configuration a search finds, per strategy, on equal wall clock.

Each run searches a space (``--space``: ``improved``, or ``modern``, the study's choices and more) on the shared birds
(50 classes, 32 px) for ``--minutes`` of wall clock with one sampler seed, then the configuration it picks is
retrained with 3 new seeds (the same 3 for every run) and compared with the study's hand-chosen final model retrained
with those same seeds. Strategies:

* ``plain``: Optuna as a user writes it by hand: ``TPESampler(seed=...)`` with its defaults and ``MedianPruner()``,
  every epoch's validation accuracy reported, the pick = ``study.best_trial``. It uses cnntune's model builder and
  trial runner, so only the search differs.
* ``cnntune``: ``tuner.search`` with its defaults (no flags but space, data and ``--timeout``); the pick = ``best``.
* ``cnntune:KEY=VALUE,...``: the same with search options changed, e.g. ``cnntune:warm_start=0,reeval_share=0``.

Every budget is also given in units of the final model's measured 20-epoch training time (the median of its 3
retrainings, which run first), so that rows from machines of different speed read alike: ``25 min = 16.3 u (92 s)``.
``--units U`` gives the budget in those units instead: the final model is trained once more (the first retraining
seed) to measure the unit on the machine as it is now, and the search gets ``U`` times that, so a run on a slower
day gets the compute of a row measured on a faster one.
Each row keeps the search's time-to-quality curve (``curve``: seconds, best validation accuracy so far, trial; the same
curve ``cnntune report`` draws). Per run it reports the pick's own validation and test accuracy, its retrained test mean
and spread, the final model's, the relative gain, the trials, the epochs and the share of trials at chance (best
validation accuracy at most twice chance, 4% on 50 classes). Where the search re-evaluated its top configurations, the
single-run best is retrained too, to show what picking by the mean changed; a configuration the results file already
holds retrained with the same seeds is not trained again (``retrained_reused`` in its row). Rows are appended to
``--out`` (JSON lines) as they finish, so an interrupted benchmark keeps what it measured; ``--table`` prints the
Markdown table of a results file.

    .venv/bin/python benchmarks/search_quality.py --strategies plain cnntune --seeds 0 1 --minutes 25 \\
        --out benchmarks/search_quality.jsonl

``--retrain KEY=VALUE,...`` only retrains the given configurations (the final model's with those choices changed, or
with ``baseline=NAME`` first, that baseline's of the space) with the same seeds, to see what the space holds beyond
what the searches found, e.g.
``--retrain body=basenet,conv1_filters=16,conv2_filters=128,dense_units=473,learning_rate=0.0031,epochs=50``.

Not a test: each run takes ``--minutes`` plus the retraining. The figures go into BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

RETRAIN_SEEDS = (900_001, 900_002, 900_003)
CHANCE_FACTOR = 2.0


def _data(args):
    from tuner.data import load_dataset

    return load_dataset("cub200", data_dir=str(Path(args.data_dir).resolve()), image_size=args.image_size)


def _retrain(space: str, params: dict[str, Any], data, seeds: list[int],
             seconds: list[float] | None = None) -> list[float]:
    """Test accuracy (percent) of ``params`` of ``space`` trained with each of ``seeds``; each training's wall seconds
    are appended to ``seconds`` when given."""
    import search_spaces
    from tuner.trial import run_trial

    out = []
    for seed in seeds:
        started = time.perf_counter()
        result = run_trial(search_spaces.get_space(space), dict(params), data, seed=seed, model_path=None)
        if seconds is not None:
            seconds.append(round(time.perf_counter() - started, 1))
        out.append(round(100 * result.test_accuracy, 2))
    return out


def _final_params(space: str = "improved") -> dict[str, Any]:
    """The study's hand-chosen final model: the space's defaults (``improved`` and ``modern`` build the same model
    from them, so one measurement of it serves both)."""
    import search_spaces
    from tuner.hp import Defaults, resolve

    return resolve(search_spaces.get_space(space), Defaults())


def _final(args, data) -> tuple[list[float], float]:
    """The hand-chosen final model over the retraining seeds, measured once and kept beside the results:
    ``(test accuracies, the budget unit)``. The unit is the median wall time of its trainings (20 epochs), so that a
    budget reads the same on machines of different speed."""
    cache = Path(args.out).with_suffix(".final.json")
    if cache.is_file():
        stored = json.loads(cache.read_text())
        if (stored.get("seeds") == args.retrain_seeds and stored.get("image_size") == args.image_size
                and stored.get("seconds")):
            return stored["test"], statistics.median(stored["seconds"])
    seconds: list[float] = []
    test = _retrain("improved", _final_params(), data, args.retrain_seeds, seconds)
    cache.write_text(json.dumps({"seeds": args.retrain_seeds, "image_size": args.image_size, "test": test,
                                 "seconds": seconds}))
    return test, statistics.median(seconds)


def _curve(records) -> list[list[float]]:
    """The search's time-to-quality curve (``tuner.store.time_to_quality``): ``[seconds, best val %, trial]``."""
    from tuner.store import time_to_quality

    return [[round(t, 1), round(100 * v, 2), n] for t, v, n in time_to_quality(records)]


def _plain(space_name: str, seed: int, seconds: float, data, storage: str) -> dict[str, Any]:
    """Plain Optuna, as written by hand: default TPE, default median pruner, the pick is the best trial."""
    import optuna

    import search_spaces
    from tuner.searching.engines import OptunaHP
    from tuner.hp import resolve
    from tuner.trial import run_trial

    space = search_spaces.get_space(space_name)
    records: list[dict[str, Any]] = []

    def objective(trial) -> float:
        params = resolve(space, OptunaHP(trial))
        pruned: list[int] = []

        def report(epoch, logs):
            trial.report(float(logs["val_accuracy"]), epoch)
            trial.set_user_attr("history", {**trial.user_attrs.get("history", {}),
                                            str(epoch): float(logs["val_accuracy"])})

        def stop(epoch, logs):
            if trial.should_prune():
                pruned.append(epoch)
                return True
            return False

        out = run_trial(space, params, data, seed=trial.number, model_path=None, on_epoch=report, should_stop=stop)
        trial.set_user_attr("config", params)
        trial.set_user_attr("test", out.test_accuracy)
        records.append({"val": out.val_accuracy, "epochs": out.epochs_run, "pruned": bool(pruned)})
        if pruned:
            raise optuna.TrialPruned()
        return out.val_accuracy

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed),
                                pruner=optuna.pruners.MedianPruner(), storage=storage, study_name=f"plain-{seed}")
    study.optimize(objective, timeout=seconds, catch=(Exception,), gc_after_trial=True)
    best = study.best_trial
    from tuner.records import TrialRecord

    return {"pick": {"params": best.user_attrs["config"], "val": round(100 * best.value, 2),
                     "test": round(100 * best.user_attrs["test"], 2), "trial": best.number},
            "curve": _curve([TrialRecord.from_trial(t) for t in study.get_trials(deepcopy=False)]),
            "trials": len(records), "epochs": sum(r["epochs"] for r in records),
            "at_chance": [r["val"] for r in records], "pruned": sum(r["pruned"] for r in records)}


def _cnntune(seed: int, seconds: float, options: dict[str, Any], storage: str, args) -> dict[str, Any]:
    import tuner

    words = [f"space={args.space}", "data=cub200", f"data_dir={Path(args.data_dir).resolve()}",
             f"image_size={args.image_size}"]
    name = f"cnntune-{seed}"
    tuner.search(words, tuner.SearchOptions(trials=100_000, timeout=seconds, seed=seed, storage=storage, study=name,
                                            **options))
    records = tuner.trials(study=name, storage=storage).records
    report = tuner.best(study=name, storage=storage)
    # Trials that ran (baselines included); warm starts still queued when the time ran out are not trials.
    searched = [r for r in records if "reeval_of" not in r.tags and r.state in ("complete", "pruned", "fail")]
    row = {"pick": {"params": report.best.params, "val": round(100 * report.best.val_accuracy, 2),
                    "test": round(100 * report.best.test_accuracy, 2), "trial": report.best.number,
                    "baseline": report.best.baseline},
           "curve": _curve(records), "trials": len(searched), "epochs": sum(r.epochs_run or 0 for r in records),
           "at_chance": [r.val_accuracy for r in searched if r.val_accuracy is not None],
           "pruned": sum(r.state == "pruned" for r in searched),
           "reeval_runs": sum(1 for r in records if "reeval_of" in r.tags)}
    if report.single_run_best is not None:
        single = report.single_run_best
        row["single_run"] = {"params": single.params, "val": round(100 * single.val_accuracy, 2),
                             "test": round(100 * single.test_accuracy, 2), "trial": single.number}
    return row


def _options(strategy: str) -> dict[str, Any]:
    _, _, spec = strategy.partition(":")
    return _pairs(spec)


_WORDS = {"none": None, "true": True, "false": False}


def _pairs(spec: str) -> dict[str, Any]:
    """``KEY=VALUE,...`` with numbers, ``true``/``false`` and ``none`` read as such, anything else a string."""
    out: dict[str, Any] = {}
    for item in filter(None, spec.split(",")):
        key, _, value = item.partition("=")
        out[key] = _WORDS[value] if value in _WORDS else json.loads(value) if value[:1].isdigit() else value
    return out


def retrain_configs(args, data, final: list[float]) -> list[dict[str, Any]]:
    """Each ``--retrain`` configuration (the final model's with the given choices changed) over the same seeds; the
    rows are appended to ``--out``'s ``.retrain.jsonl`` file as they finish."""
    import search_spaces
    from tuner.hp import Defaults, resolve

    rows = []
    final_mean, _ = _stats(final)
    final_params = _final_params(args.space)
    space = search_spaces.get_space(args.space)
    baselines = {b.name: b.params for b in space.BASELINES}
    for spec in args.retrain:
        changes = _pairs(spec)
        start = baselines[changes.pop("baseline")] if "baseline" in changes else final_params
        params = resolve(space, Defaults({**start, **changes}))
        seconds: list[float] = []
        test = _retrain(args.space, params, data, args.retrain_seeds, seconds)
        mean, spread = _stats(test)
        rows.append({"space": args.space, "retrain": spec, "params": params, "test": test, "mean": mean,
                     "spread": spread, "gain_pct": round(100 * (mean - final_mean) / final_mean, 1),
                     "seconds": seconds, "retrain_seeds": args.retrain_seeds})
        with _retrained(args.out).open("a") as fh:
            fh.write(json.dumps(rows[-1]) + "\n")
        print(json.dumps(rows[-1]), flush=True)
    return rows


def _measured(out: str | Path, space: str, params: dict[str, Any], seeds: list[int]) -> list[float] | None:
    """The test accuracies a results file already holds for ``params`` of ``space`` retrained with ``seeds`` (a pick
    or single-run best of an earlier row, or a ``--retrain`` row), else None. One results file holds one kind of
    machine (its final model is measured once for it), so a configuration that two runs pick is trained once and both
    rows share that measurement. Same-seed trainings usually repeat to the digit there but not always (BENCHMARKS.md,
    `modern` seed 2), so a reused figure is one measurement of the configuration with those seeds, not the only one."""
    from tuner.store import config_key

    key, seeds = config_key(params), list(seeds)
    out = Path(out)
    rows = [r for path in (out, _retrained(out)) if path.is_file() for r in _rows(path)]
    for r in rows:
        if _space(r) != space or r.get("retrain_seeds") != seeds:
            continue
        found = [(r[k]["params"], r[k].get("retrained_test")) for k in ("pick", "single_run") if r.get(k)]
        found += [(r["params"], r["test"])] if "params" in r else []
        for other, test in found:
            if test and config_key(other) == key:
                return list(test)
    return None


def _retrained(out: str | Path) -> Path:
    """Where ``--retrain`` rows go: beside ``--out``."""
    return Path(out).with_suffix(".retrain.jsonl")


def retrain_table(rows: list[dict[str, Any]], final: list[float]) -> str:
    """The Markdown table of ``--retrain`` rows."""
    fm, fs = _stats(final)
    lines = ["| space | configuration | retrained test % | final retrained test % | gain | s per training |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        seconds = f"{statistics.median(r['seconds']):.0f}" if r.get("seconds") else "-"
        lines.append(f"| {r['space']} | `{r['retrain']}` | {r['mean']} ± {r['spread']} | {fm} ± {fs} | "
                     f"{r['gain_pct']:+.1f}% | {seconds} |")
    return "\n".join(lines)


def _stats(values: list[float]) -> tuple[float, float]:
    return round(statistics.fmean(values), 2), round(statistics.stdev(values), 2) if len(values) > 1 else 0.0


def run(args, strategy: str, seed: int, data, final: list[float], unit: float) -> dict[str, Any]:
    from tuner.store import config_key

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.keep or tmp) / f"{strategy.replace(':', '_').replace(',', '_')}-seed{seed}"
        folder.mkdir(parents=True, exist_ok=True)
        storage = f"sqlite:///{folder / 'study.db'}"
        start = time.perf_counter()
        if strategy == "plain":
            row = _plain(args.space, seed, args.minutes * 60, data, storage)
        else:
            row = _cnntune(seed, args.minutes * 60, _options(strategy), storage, args)
        row["search_seconds"] = round(time.perf_counter() - start, 1)
    row["space"], row["strategy"], row["seed"], row["minutes"] = args.space, strategy, seed, args.minutes
    row["unit_s"], row["budget_units"] = unit, round(args.minutes * 60 / unit, 2)
    chance = CHANCE_FACTOR / data.num_classes
    vals = row.pop("at_chance")
    row["share_at_chance"] = round(sum(v <= chance for v in vals) / max(len(vals), 1), 3)
    final_params = _final_params(args.space)
    for key in ("pick", "single_run"):
        if key in row:
            # The hand-chosen configuration itself (a baseline pick) is not trained again: same configuration and
            # seeds, so its gain is 0 by definition (and on 2 cores a 20-epoch retrain costs minutes).
            params = row[key]["params"]
            if config_key(params) == config_key(final_params):
                row[key]["retrained_test"] = list(final)
            elif (measured := _measured(args.out, args.space, params, args.retrain_seeds)) is not None:
                row[key]["retrained_test"], row[key]["retrained_reused"] = measured, True
            else:
                row[key]["retrained_test"] = _retrain(args.space, params, data, args.retrain_seeds)
    row["final_retrained_test"], row["retrain_seeds"] = final, args.retrain_seeds
    pick_mean, _ = _stats(row["pick"]["retrained_test"])
    final_mean, _ = _stats(final)
    row["gain_pct"] = round(100 * (pick_mean - final_mean) / final_mean, 1)
    return row


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| space | strategy | seed | budget | trials (pruned) | epochs | at chance | pick val / test % | "
             "pick retrained "
             "test % | final retrained test % | gain | single-run best retrained test % |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        pm, ps = _stats(r["pick"]["retrained_test"])
        fm, fs = _stats(r["final_retrained_test"])
        pick_test = "-" if r["pick"]["test"] is None else r["pick"]["test"]
        single = "-"
        if r.get("single_run"):
            sm, ss = _stats(r["single_run"]["retrained_test"])
            single = f"{sm} ± {ss} (trial {r['single_run']['trial']})"
        # The budget in units of the final model's 20-epoch training time on the machine that ran the row.
        budget = f"{r['minutes']} min" + (f" = {r['budget_units']} u ({r['unit_s']:.0f} s)" if r.get("unit_s") else "")
        lines.append(f"| {_space(r)} | {r['strategy']} | {r['seed']} | {budget} | {r['trials']} "
                     f"({r['pruned']}) | {r['epochs']} | "
                     f"{100 * r['share_at_chance']:.0f}% | {r['pick']['val']} / {pick_test} | {pm} ± {ps} | "
                     f"{fm} ± {fs} | {r['gain_pct']:+.1f}% | {single} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="../shared/data/cub200_subset")
    parser.add_argument("--space", default="improved", choices=["improved", "modern"],
                        help="the space searched; both hold the study's final model, their defaults")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--strategies", nargs="+", default=["plain", "cnntune"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--minutes", type=float, default=25.0)
    parser.add_argument("--units", type=float, default=None,
                        help="the budget in units of the final model's 20-epoch training, measured now (overrides "
                             "--minutes)")
    parser.add_argument("--out", default="search_quality.jsonl", help="JSON lines, appended to")
    parser.add_argument("--table", action="store_true", help="only print the tables of --out (its rows of --space)")
    parser.add_argument("--keep", default=None, help="keep each run's study store in this folder (for analysis)")
    parser.add_argument("--retrain-seeds", type=int, nargs=3, default=list(RETRAIN_SEEDS), metavar="SEED",
                        help="the 3 seeds the picks and the final model are retrained with (default: %(default)s); "
                             "other seeds give a held-out check of a strategy tuned on the default ones")
    parser.add_argument("--retrain", nargs="+", default=None, metavar="KEY=VALUE,...",
                        help="only retrain these configurations (the final model's with the given choices changed) "
                             "with the same seeds, against the final model")
    args = parser.parse_args()
    out = Path(args.out)
    if args.table:  # the rows of --space
        if out.is_file():
            print(table([r for r in _rows(out) if _space(r) == args.space]))
        retrained = [r for r in _rows(_retrained(out)) if _space(r) == args.space] if _retrained(out).is_file() else []
        if retrained:
            print(retrain_table(retrained, json.loads(out.with_suffix(".final.json").read_text())["test"]))
        return
    data = _data(args)
    final, unit = _final(args, data)
    print(f"final model retrained: {final}; budget unit (its 20-epoch training) {unit:.1f} s", flush=True)
    if args.retrain:
        retrain_configs(args, data, final)
        return
    if args.units:
        seconds: list[float] = []
        _retrain("improved", _final_params(), data, args.retrain_seeds[:1], seconds)
        unit = seconds[0]
        args.minutes = round(args.units * unit / 60, 2)
        print(f"budget unit measured now {unit:.1f} s: {args.units} u = {args.minutes} min", flush=True)
    for seed in args.seeds:
        for strategy in args.strategies:
            row = run(args, strategy, seed, data, final, unit)
            with out.open("a") as fh:
                fh.write(json.dumps(row) + "\n")
            print(json.dumps({k: row[k] for k in ("strategy", "seed", "budget_units", "trials", "epochs", "gain_pct")}),
                  flush=True)
    print(table(_rows(out)))


def _space(row: dict[str, Any]) -> str:
    """The space a results row searched or retrained: rows written before the field existed are ``improved``'s."""
    return row.get("space", "improved")


def _rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


if __name__ == "__main__":
    main()
