"""The search strategy: warm starts near the hand-chosen configuration, epochs as the pruner's fidelity, and the
re-evaluation phase that makes ``best`` pick by the mean of new seeds. A fake runner stands in for training."""

from __future__ import annotations

import optuna
import pytest

import search_spaces
import tuner
from conftest import SYN, FakeRunner, one_line_error, run_cli
from tuner.hp import Defaults, describe, resolve
from tuner.searching import climb, grow, perturbations, study_trend, upgrade
from tuner.store import best_record

IMPROVED = search_spaces.improved
MODERN = search_spaces.modern


def test_perturbations_stay_near_the_hand_chosen_configuration():
    defaults = resolve(IMPROVED, Defaults())
    configs = perturbations(IMPROVED, {"epochs": 3}, 20, seed=4)
    assert len(configs) == 20 and configs == perturbations(IMPROVED, {"epochs": 3}, 20, seed=4)
    assert configs != perturbations(IMPROVED, {"epochs": 3}, 20, seed=5)
    params = describe(IMPROVED)
    changed = []
    for config in configs:
        assert config == resolve(IMPROVED, Defaults(config))  # a valid, fully resolved configuration
        assert config["epochs"] == 3  # pins never move
        assert all(params[k].contains(v) for k, v in config.items() if k != "epochs")
        changed.append(sum(1 for k in defaults if k in config and config[k] != defaults[k]))
    # Each differs from the hand-chosen one, in a few choice points rather than all 18.
    assert min(changed) >= 1 and sum(changed) / len(changed) < 6
    assert len({tuple(sorted(c.items())) for c in configs}) == 20


def test_warm_starts_cross_the_study_configurations():
    """With the baselines mixed in, some start-up trials take BaseNet's values (its body, no augmentation, ...),
    never a value outside the space, and never a baseline itself."""
    defaults = resolve(IMPROVED, Defaults())
    basenet = resolve(IMPROVED, Defaults(next(b for b in IMPROVED.BASELINES if b.name == "basenet").params))
    plain = perturbations(IMPROVED, {}, 30, seed=1)
    crossed = perturbations(IMPROVED, {}, 30, seed=1, mix=[basenet, defaults])
    params = describe(IMPROVED)

    def from_basenet(configs):
        return sum(c["body"] == "basenet" and c.get("conv2_filters") == basenet["conv2_filters"] for c in configs)

    assert from_basenet(plain) == 0 < from_basenet(crossed)
    assert sum(c["normalize"] is False and c["zoom_range"] == 0 for c in crossed) > 0
    for config in crossed:
        assert config == resolve(IMPROVED, Defaults(config)) and config not in (basenet, defaults)
        assert all(params[k].contains(v) for k, v in config.items())
    assert crossed == perturbations(IMPROVED, {}, 30, seed=1, mix=[basenet, defaults])


def test_the_first_warm_starts_continue_the_study_on_each_of_its_bodies():
    """BaseNet -> final widened the second conv 16 -> 56 and trained 15 -> 20 epochs: the study continued widens it
    to 196 (clipped to the range's 128) and trains 25 epochs, on BaseNet's body first, then on the final body; every
    other choice is the hand-chosen one."""
    defaults = resolve(IMPROVED, Defaults())
    study = [resolve(IMPROVED, Defaults(b.params)) for b in IMPROVED.BASELINES]
    continued = study_trend(IMPROVED, {}, study)
    moved = {"zoom_range": 0.4, "conv2_filters": 128, "epochs": 25}
    assert [{k: v for k, v in c.items() if defaults.get(k) != v} for c in continued] == [
        {**moved, "body": "basenet"}, moved]
    assert continued[0].keys() < defaults.keys()  # BaseNet's body has no third conv
    for config in continued:
        assert config == resolve(IMPROVED, Defaults(config))
    assert perturbations(IMPROVED, {}, 5, seed=3, mix=study)[:2] == continued
    # Pins never move; a study that moved nothing (one configuration, the defaults) is not continued.
    assert all(c["epochs"] == 3 for c in study_trend(IMPROVED, {"epochs": 3}, study))
    assert study_trend(IMPROVED, {}, [defaults]) == []
    basenet = search_spaces.basenet
    assert study_trend(basenet, {}, [resolve(basenet, Defaults())]) == []


def test_climbing_moves_from_the_best_configuration_and_never_repeats_one():
    defaults = resolve(IMPROVED, Defaults())
    best = resolve(IMPROVED, Defaults({"body": "basenet", "conv1_filters": 16, "conv2_filters": 128, "epochs": 40}))
    tried = [defaults, best]
    pins = {"batch_size": 64}
    steps = [climb(IMPROVED, pins, best, tried, seed=s) for s in range(30)]
    assert steps[0] == climb(IMPROVED, pins, best, tried, seed=0)  # seeded
    for config in steps:
        assert config not in tried and config["batch_size"] == 64
        assert config == resolve(IMPROVED, Defaults(config))
    # Each step moves a few choice points of the best one, not of the defaults: most keep the best's values.
    moved = [sum(config.get(k) != v for k, v in best.items() if k != "batch_size") for config in steps]
    assert 1 <= sum(moved) / len(moved) <= 6
    assert sum(c["body"] == "basenet" for c in steps) >= 20
    assert sum(c.get("conv1_filters") == 16 for c in steps) >= 20
    # A step that paid is taken once more first: from 8 to 16 filters and 30 to 40 epochs, then 32 and 50; the rest
    # as in the best one. Once tried, the steps are random again.
    parent = {**best, "conv1_filters": 8, "epochs": 30, "zoom_range": 0.0}
    again = climb(IMPROVED, pins, best, tried, seed=0, parent=parent)
    assert again == {**best, "conv1_filters": 32, "epochs": 50, "zoom_range": 0.4, "batch_size": 64}
    assert climb(IMPROVED, pins, best, [*tried, again], seed=0, parent=parent) == steps[0]
    # Nothing left to try: no step.
    only = {k: v for k, v in defaults.items() if k != "normalize"}
    both = [resolve(IMPROVED, Defaults({**only, "normalize": n})) for n in (True, False)]
    assert climb(IMPROVED, only, both[0], both, seed=0) is None


def test_growing_doubles_the_widths_and_the_epochs_within_their_ranges():
    """The study continued on BaseNet's body (6 / 128 filters, dense 50, 25 epochs) grows to 12 / 128 (the range's
    top), dense 100 and 50 epochs, then 24 filters and dense 200 (epochs at the range's top); every other choice
    stays."""
    study = [resolve(IMPROVED, Defaults(b.params)) for b in IMPROVED.BASELINES]
    best = study_trend(IMPROVED, {}, study)[0]
    once = grow(IMPROVED, {}, best, study)
    assert {k: v for k, v in once.items() if best.get(k) != v} == {
        "conv1_filters": 12, "dense_units": 100, "epochs": 50}
    assert once.keys() == best.keys() and once == resolve(IMPROVED, Defaults(once))
    twice = grow(IMPROVED, {}, once, [*study, best])
    assert {k: v for k, v in twice.items() if once.get(k) != v} == {"conv1_filters": 24, "dense_units": 200}
    # Pins never grow; a configuration tried already, or one with nothing left to grow, is no step.
    assert grow(IMPROVED, {"epochs": 25, "dense_units": 50}, best, study) == {**best, "conv1_filters": 12}
    assert grow(IMPROVED, {}, best, [once]) is None
    top = {**best, "conv1_filters": 64, "conv2_filters": 128, "dense_units": 512, "epochs": 50}
    assert grow(IMPROVED, {}, top, []) is None
    # The final body grows its third conv too (106 -> 212); a space that names nothing to grow never grows.
    assert grow(IMPROVED, {}, study[1], [])["conv3_filters"] == 212
    basenet = search_spaces.basenet
    assert grow(basenet, {}, resolve(basenet, Defaults()), []) is None


def _cost(params):
    """A cost (as a trial records it) that grows with the first conv's width, ten times higher on the deeper bodies
    than on BaseNet's."""
    return {"macs": (1 if params["body"] == "basenet" else 10) * params["conv1_filters"] * 100_000, "activations": 0}


def _accuracy(params, seed):
    return params["conv2_filters"] / 256 + params["conv1_filters"] / 1000, 0.3


def test_a_best_trial_that_costs_less_than_the_costliest_baseline_grows_first(store):
    """The study continued on BaseNet's body is the best and the cheapest: it grows (its first conv 6 -> 12 -> 24 ->
    48 -> 64 filters, the range's top) while the best trial costs less than the final baseline; the other warm
    starts follow."""
    runner = FakeRunner(accuracy=_accuracy, facts=_cost)
    tuner.search(["space=improved", *SYN],
                 tuner.SearchOptions(trials=8, storage=store, study="g", warm_start=4, seed=4), runner=runner)
    records = tuner.trials(study="g", storage=store).records
    assert [r.baseline for r in records[:2]] == ["basenet", "final"]
    assert [(r.tags.get("warm_start"), r.tags.get("grown_from")) for r in records[2:]] == [
        (0, None), (None, 2), (None, 3), (None, 4), (None, 5), (1, None), (2, None), (3, None)]
    assert [r.params["conv1_filters"] for r in records[2:7]] == [6, 12, 24, 48, 64]
    assert records[3].params == {**records[2].params, "conv1_filters": 12, "dense_units": 100}  # epochs pinned
    # --no-grow: the warm starts, then the sampler.
    tuner.search(["space=improved", *SYN],
                 tuner.SearchOptions(trials=6, storage=store, study="g0", warm_start=4, seed=4, grow=False),
                 runner=runner)
    assert [r.tags.get("warm_start") for r in tuner.trials(study="g0", storage=store).records[2:]] == [
        0, 1, 2, 3, None, None]


@pytest.mark.parametrize("first_growth, grown", [(0.47, [6, 12, 24, 48, 64]), (0.2, [6, 12])])
def test_growth_goes_on_from_a_growth_within_the_noise_of_the_best(store, first_growth, grown):
    """The first growth scores 3 points below the study continued, within one standard error on the synthetic
    validation split (24 images: about 10 points), so the chain goes on from it to the bigger models, which score
    best. A first growth 30 points below ends the chain: the warm starts follow."""
    scores = {6: 0.5, 12: first_growth, 24: 0.6, 48: 0.61, 64: 0.62}

    def accuracy(params, seed):
        # The study continued on BaseNet's body (128 filters in its second conv) and its growths; the rest lower.
        return (scores[params["conv1_filters"]] if params.get("conv2_filters") == 128 and params["body"] == "basenet"
                else 0.3), 0.3

    tuner.search(["space=improved", *SYN], tuner.SearchOptions(trials=6, storage=store, study="n", warm_start=4,
                                                                seed=4), runner=FakeRunner(accuracy=accuracy,
                                                                                           facts=_cost))
    records = tuner.trials(study="n", storage=store).records[2:]
    chain = [r for r in records if "grown_from" in r.tags or r.tags.get("warm_start") == 0]
    assert [r.params["conv1_filters"] for r in chain] == grown
    assert [r.tags.get("grown_from") for r in chain[1:]] == [r.number for r in chain[:-1]]


def test_a_seeded_search_with_baselines_and_growth_repeats_itself(store):
    """The same seeded, --trials-bounded sequential search twice, baselines and growth on: the same configurations
    in the same order, growth included, although every trial takes another number of seconds each time (growth is
    decided from what the trials record, never from the clock)."""
    import random

    def run(study: str) -> list[tuple]:
        noisy = random.Random(study).uniform  # seconds differ between the two runs
        runner = FakeRunner(accuracy=_accuracy, facts=_cost, seconds=lambda params: noisy(0.5, 50.0))
        tuner.search(["space=improved", *SYN], tuner.SearchOptions(trials=14, storage=store, study=study, seed=7),
                     runner=runner)
        records = tuner.trials(study=study, storage=store).records
        return [(r.baseline, r.tags.get("warm_start"), r.tags.get("grown_from"), r.params) for r in records]

    first, second = run("a"), run("b")
    assert len(first) == 16 and first == second
    assert any(grown is not None for _, _, grown, _ in first)
    assert any(warm is None and grown is None and baseline is None for baseline, warm, grown, _ in first)  # TPE's


def test_growing_is_an_optuna_engine_option(tmp_path):
    result = run_cli("search", "space=basenet", *SYN, "--engine", "keras-tuner", "--grow",
                     "--storage", f"sqlite:///{tmp_path / 's.db'}")
    one_line_error(result, "--grow", "keras-tuner")


def test_upgrading_applies_the_spaces_upgrade_once_to_a_configuration():
    study = [resolve(MODERN, Defaults(b.params)) for b in MODERN.BASELINES]
    best = study_trend(MODERN, {}, study)[0]
    up = upgrade(MODERN, {}, best, study)
    # The upgrade's values, and the default of a choice point they make active (the cosine's warm-up).
    assert {k: v for k, v in up.items() if best.get(k) != v} == {**MODERN.UPGRADE, "warmup_epochs": 0}
    assert up == resolve(MODERN, Defaults(up))
    # Once tried, or on a configuration that has it already, no upgrade; pins are kept; a space without one never.
    assert upgrade(MODERN, {}, best, [*study, up]) is None and upgrade(MODERN, {}, up, []) is None
    pinned = upgrade(MODERN, {"label_smoothing": 0.0}, best, [])
    assert pinned["label_smoothing"] == 0.0 and pinned["lr_schedule"] == MODERN.UPGRADE["lr_schedule"]
    assert upgrade(IMPROVED, {}, resolve(IMPROVED, Defaults()), []) is None


def _modern_cost(params):
    width = params.get("conv1_filters") or params.get("res_width")
    return {"macs": (1 if params["body"] == "basenet" else 10) * width * 100_000, "activations": 0}


def test_each_new_best_trial_is_upgraded_before_it_grows(store):
    """The upgrade pays (label smoothing adds 0.05): the study continued on BaseNet's body is upgraded, the upgraded
    trial is the best and grows, its growths keep the upgrade; with --no-upgrade no trial is upgraded."""
    def accuracy(params, seed):
        return _accuracy(params, seed)[0] + 0.5 * (params.get("label_smoothing") or 0.0), 0.3

    runner = FakeRunner(accuracy=accuracy, facts=_modern_cost)
    tuner.search(["space=modern", *SYN], tuner.SearchOptions(trials=6, storage=store, study="u", warm_start=3, seed=4),
                 runner=runner)
    records = tuner.trials(study="u", storage=store).records
    assert [r.baseline for r in records[:3]] == ["basenet", "final", "resnet20"]
    steps = [(r.tags.get("warm_start"), r.tags.get("upgraded_from"), r.tags.get("grown_from")) for r in records[3:]]
    assert steps[:3] == [(0, None, None), (None, 3, None), (None, None, 4)]
    assert records[4].params == upgrade(MODERN, {"epochs": 1}, records[3].params, [])
    assert all(records[i].params["label_smoothing"] == MODERN.UPGRADE["label_smoothing"] for i in (4, 5))
    assert records[5].params["conv1_filters"] == 2 * records[4].params["conv1_filters"]
    tuner.search(["space=modern", *SYN], tuner.SearchOptions(trials=4, storage=store, study="u0", warm_start=3, seed=4,
                                                              upgrade=False), runner=runner)
    assert not any("upgraded_from" in r.tags for r in tuner.trials(study="u0", storage=store).records)


def test_an_upgrade_that_does_not_pay_is_left_behind(store):
    """Label smoothing costs 0.3 here, far more than the noise of the synthetic validation split: the upgraded
    trial scores clearly lower, the search grows the trial it came from, and tries the upgrade again on that new
    best."""
    def accuracy(params, seed):
        return _accuracy(params, seed)[0] - 3.0 * (params.get("label_smoothing") or 0.0), 0.3

    tuner.search(["space=modern", *SYN], tuner.SearchOptions(trials=5, storage=store, study="d", warm_start=3, seed=4),
                 runner=FakeRunner(accuracy=accuracy, facts=_modern_cost))
    records = tuner.trials(study="d", storage=store).records[3:]
    assert [(r.tags.get("upgraded_from"), r.tags.get("grown_from")) for r in records[:4]] == [
        (None, None), (3, None), (None, 3), (5, None)]
    assert records[2].params["label_smoothing"] == 0.0


def test_upgrading_is_an_optuna_engine_option(tmp_path):
    result = run_cli("search", "space=modern", *SYN, "--engine", "keras-tuner", "--upgrade",
                     "--storage", f"sqlite:///{tmp_path / 's.db'}")
    one_line_error(result, "--upgrade", "keras-tuner")


def test_after_the_study_continued_half_the_searched_trials_climb_from_the_best_so_far(store):
    # The more filters in the second conv, the better: the climb follows them.
    runner = FakeRunner(accuracy=lambda params, seed: (params["conv2_filters"] / 256, 0.3))
    tuner.search(["space=improved", *SYN],
                 tuner.SearchOptions(trials=10, storage=store, study="c", warm_start=4, climb=0.5, seed=4),
                 runner=runner)
    records = tuner.trials(study="c", storage=store).records
    # The study continued (2 warm starts) first; then the climb takes turns with the other warm starts (crossovers),
    # then with the sampler.
    assert [(r.tags.get("warm_start"), "climb_of" in r.tags) for r in records[2:]] == [
        (0, False), (1, False), (None, True), (2, False), (None, True), (3, False), (None, True), (None, False),
        (None, True), (None, False)]
    # Resumed, it goes on taking turns.
    tuner.search(["space=improved", *SYN],
                 tuner.SearchOptions(trials=12, storage=store, study="c", warm_start=4, climb=0.5, seed=4),
                 runner=runner)
    resumed = tuner.trials(study="c", storage=store).records
    assert [(r.tags.get("warm_start"), "climb_of" in r.tags) for r in resumed[12:]] == [(None, True), (None, False)]
    records = resumed
    for i, rec in enumerate(records):
        if "climb_of" in rec.tags:
            best = best_record(records[:i])
            assert rec.tags["climb_of"] == best.number
            assert 1 <= sum(rec.params.get(k) != v for k, v in best.params.items() if k != "epochs") <= 8
    # Off: the sampler proposes every trial after the warm starts.
    tuner.search(["space=improved", *SYN],
                 tuner.SearchOptions(trials=4, storage=store, study="c0", warm_start=1, climb=0, seed=4), runner=runner)
    assert not any("climb_of" in r.tags for r in tuner.trials(study="c0", storage=store).records)


def test_warm_start_trials_come_right_after_the_baselines(store):
    runner = FakeRunner()
    tuner.search(["space=improved", *SYN],
                 tuner.SearchOptions(trials=5, storage=store, study="w", warm_start=3, climb=0, seed=2), runner=runner)
    records = tuner.trials(study="w", storage=store).records
    assert [r.baseline for r in records[:2]] == ["basenet", "final"]
    assert [r.tags.get("warm_start") for r in records[2:]] == [0, 1, 2, None, None]
    # Crossovers of the study's configurations: the baselines' values are mixed in.
    expected = perturbations(IMPROVED, {"epochs": 1}, 3, seed=2, mix=[r.params for r in records[:2]])
    assert [r.params for r in records[2:5]] == expected
    # The warm starts are searched trials: they count toward the budget of 5.
    assert len(records) == 7
    # Resuming does not repeat them.
    tuner.search(["space=improved", *SYN],
                 tuner.SearchOptions(trials=6, storage=store, study="w", warm_start=3, climb=0, seed=2), runner=runner)
    assert [r.tags.get("warm_start") for r in tuner.trials(study="w", storage=store).records].count(0) == 1


def test_keras_tuner_also_runs_the_warm_starts_after_the_baselines(store):
    tuner.search(["space=basenet", *SYN],
                 tuner.SearchOptions(trials=3, storage=store, study="kw", engine="keras-tuner", warm_start=2, seed=2),
                 runner=FakeRunner())
    records = tuner.trials(study="kw", storage=store).records
    assert [r.baseline for r in records] == ["basenet", None, None, None]
    assert [r.tags.get("warm_start") for r in records] == [None, 0, 1, None]
    assert [r.params for r in records[1:3]] == perturbations(search_spaces.basenet, {"epochs": 1}, 2, seed=2,
                                                             mix=[records[0].params])


def test_under_a_pruner_epochs_are_the_fidelity_not_a_choice(store):
    tuner.search(["space=improved", "data=synthetic"],
                 tuner.SearchOptions(trials=3, storage=store, study="f", pruner="asha", max_epochs=4, warm_start=1),
                 runner=FakeRunner())
    view = tuner.trials(study="f", storage=store)
    assert view.meta["pins"] == {} and view.meta["search"]["max_epochs"] == 4
    # The baselines are the study's configurations, with their own epochs; every searched trial may train 4.
    assert [(r.baseline, r.params["epochs"]) for r in view.records[:2]] == [("basenet", 15), ("final", 20)]
    assert [r.params["epochs"] for r in view.records[2:]] == [4, 4, 4]
    trials = optuna.load_study(study_name="f", storage=store).trials
    assert all("epochs" not in t.params for t in trials[2:])  # never sampled
    # Without --max-epochs the maximum is the space's, and a worker reuses it.
    tuner.search(["space=improved", "data=synthetic"],
                 tuner.SearchOptions(trials=1, storage=store, study="g", pruner="median"), runner=FakeRunner())
    top = describe(IMPROVED)["epochs"].max_value
    assert tuner.trials(study="g", storage=store).meta["search"]["max_epochs"] == top
    tuner.worker("g", store, runner=FakeRunner())
    # A pinned epochs stays what the user said, for every trial.
    tuner.search(["space=improved", "data=synthetic", "epochs=2"],
                 tuner.SearchOptions(trials=1, storage=store, study="h", pruner="asha"), runner=FakeRunner())
    assert {r.params["epochs"] for r in tuner.trials(study="h", storage=store).records} == {2}


def test_the_first_rung_sits_at_an_eighth_of_the_epochs_fidelity():
    import optuna

    from tuner.searching.engines import make_pruner
    from tuner.searching.engines._pruning import first_rung

    assert [first_rung(m) for m in (50, 30, 8, None)] == [6, 3, 2, 2]
    # ASHA with the improved space's fidelity never stops a trial before epoch 6.
    study = optuna.create_study(direction="maximize", pruner=make_pruner("asha", max_epochs=50))
    for value in (0.9, 0.8, 0.7, 0.6):
        good = study.ask()
        for epoch in range(1, 7):
            good.report(value, epoch)
            good.should_prune()  # ASHA records a trial's value at a rung when asked there
        study.tell(good, value)
    bad = study.ask()
    for epoch in range(1, 6):
        bad.report(0.01, epoch)
        assert not bad.should_prune(), epoch
    bad.report(0.01, 6)
    assert bad.should_prune()


@pytest.mark.parametrize(
    "args, needles",
    [
        (["--max-epochs", "4", "--pruner", "none"], ["--max-epochs", "epochs=N"]),
        (["--max-epochs", "4", "--engine", "keras-tuner"], ["--max-epochs", "hyperband"]),
        (["--max-epochs", "400", "--pruner", "asha"], ["--max-epochs 400", "1..50"]),
        (["--max-epochs", "4", "--pruner", "asha", "epochs=3"], ["--max-epochs 4", "epochs=3"]),
        (["--warm-start", "-1"], ["--warm-start"]),
        (["--reeval-share", "1"], ["--reeval-share"]),
        (["--reeval-top", "1"], ["--reeval-top"]),
        (["--climb", "1.5"], ["--climb"]),
        (["--climb", "0.5", "--engine", "keras-tuner"], ["--climb", "--warm-start"]),
    ],
)
def test_bad_strategy_options_get_one_line(store, args, needles):
    one_line_error(run_cli("search", "space=improved", "data=synthetic", *args, "--storage", store), *needles)


def _planted(params, seed):
    """Trial learning rates decide the accuracy: a 'lucky' rate scores high once and low on new seeds."""
    lucky = params["learning_rate"] > 0.005
    new_seed = seed >= 10_000
    return (0.40 if lucky and new_seed else 0.90 if lucky else 0.62), 0.5


def test_the_reevaluation_phase_makes_best_pick_by_the_mean(store):
    words = ["space=basenet", *SYN, "optimizer=adam", "batch_size=32"]
    runner = FakeRunner(accuracy=_planted)
    # The sampler's start-up (no warm starts) draws the planted lucky learning rate.
    result = tuner.search(words,
                          tuner.SearchOptions(trials=6, storage=store, study="r", seed=3, reeval_share=0.3,
                                              reeval_top=3, warm_start=0), runner=runner)
    records = tuner.trials(study="r", storage=store).records
    reeval = [r for r in records if "reeval_of" in r.tags]
    searched = [r for r in records if "reeval_of" not in r.tags and r.baseline is None]
    assert len(searched) == 6 and len(reeval) == 3 * 2  # no timeout: 2 new seeds for each of the top 3
    report = tuner.best(study="r", storage=store)
    lucky = max(records, key=lambda r: (r.val_accuracy, -r.number))
    assert lucky.val_accuracy == 0.90 and report.single_run_best.number == lucky.number
    assert report.best.number != lucky.number and report.picked_by_mean.val_mean == pytest.approx(62.0)
    assert result.best.number == report.best.number  # the search result names the same pick
    assert {r.number for r in result.ran} >= {r.number for r in reeval}


def test_reevaluation_fits_the_time_left_or_says_why_it_did_not_run(store):
    class Slow(FakeRunner):
        def __call__(self, *args, **kwargs):
            out = super().__call__(*args, **kwargs)
            out.seconds = 100.0  # as if each run took 100 s
            return out

    result = tuner.search(["space=basenet", *SYN],
                          tuner.SearchOptions(trials=3, storage=store, study="t", timeout=30, reeval_share=0.25),
                          runner=Slow())
    assert "no time left to re-evaluate" in result.message and "best --reeval" in result.message
    assert not [r for r in tuner.trials(study="t", storage=store).records if "reeval_of" in r.tags]


def test_reevaluation_retrains_the_top_two_when_the_top_three_do_not_fit(store):
    # Calls in order: the baseline, then 3 searched trials, then the re-evaluation runs.
    scripted = [(0.50, 5.0), (0.90, 20.0), (0.80, 20.0), (0.70, 200.0)]

    class Scripted(FakeRunner):
        def __call__(self, *args, **kwargs):
            out = super().__call__(*args, **kwargs)
            n = len(self.calls) - 1
            out.val_accuracy, out.seconds = scripted[n] if n < len(scripted) else (0.6, 1.0)
            return out

    runner = Scripted()
    # 200 s budget, a quarter kept: one round of the top 3 takes 240 s, of the top 2 40 s (3 seeds fit).
    result = tuner.search(["space=basenet", *SYN],
                          tuner.SearchOptions(trials=3, storage=store, study="k", timeout=200, reeval_share=0.25,
                                              reeval_top=3), runner=runner)
    assert result.message == ""
    records = tuner.trials(study="k", storage=store).records
    originals = {r.number: r.val_accuracy for r in records if not r.tags.get("reeval_of")}
    reeval = [r.tags["reeval_of"] for r in records if "reeval_of" in r.tags]
    assert sorted(originals[n] for n in set(reeval)) == [0.80, 0.90] and len(reeval) == 2 * 3


class Clock:
    """A clock that only runs when a trial "trains": a runner moves it forward, epochs take seconds without
    sleeping. Passed to ``tuner.search`` / ``tuner.worker`` as their ``clock``."""

    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _clocked_runner(clock: Clock):
    """A ``FakeRunner`` whose 10 epochs each take 100 s of ``clock``; it asks ``should_stop`` after each."""

    class Epochs(FakeRunner):
        def __call__(self, space, params, data, *, seed, model_path, on_epoch=None, should_stop=None, **kwargs):
            out = super().__call__(space, params, data, seed=seed, model_path=model_path)
            run = 0
            for run in range(1, 11):
                clock.now += 100.0
                if should_stop(run, {"val_accuracy": out.val_accuracy}):
                    break
            out.epochs_run, out.seconds = run, 100.0 * run
            return out

    return Epochs()


@pytest.mark.parametrize("share, searched_epochs", [(0.25, 5), (0.0, 10)])
def test_a_kept_share_stops_the_last_trial_at_the_search_phase_end(store, share, searched_epochs):
    clock = Clock()
    # 2,000 s with a quarter kept: the search phase ends 1,500 s in; the baseline trains its 10 epochs (1,000 s),
    # the searched trial starts then and is stopped after its 5th epoch.
    tuner.search(["space=basenet", "data=synthetic", "epochs=10"],
                 tuner.SearchOptions(trials=1, storage=store, study="s", timeout=2000, reeval_share=share),
                 runner=_clocked_runner(clock), clock=clock)
    baseline, searched = [r for r in tuner.trials(study="s", storage=store).records if "reeval_of" not in r.tags]
    assert baseline.state == "complete" and baseline.epochs_run == 10  # the hand-chosen configuration always finishes
    assert searched.epochs_run == searched_epochs
    if share:
        assert searched.state == "pruned" and searched.reason == "stopped at epoch 5: the search's time was up"
    else:  # without a kept share, --timeout only stops new trials from starting
        assert searched.state == "complete"


@pytest.mark.parametrize("share", [0.25, 0.0])
def test_a_kept_share_also_stops_a_workers_last_trial(store, share):
    clock = Clock()
    # The study keeps a share; its worker's --timeout (1,500 s, as --workers N passes the search phase's time left)
    # ends while the searched trial trains, after the baseline's 10 epochs (1,000 s).
    words = ["space=basenet", "data=synthetic", "epochs=10"]
    tuner.search(words,
                 tuner.SearchOptions(trials=1, storage=store, study="w", timeout=2000, reeval_share=share, workers=0))
    tuner.worker("w", store, {"timeout": 1500}, runner=_clocked_runner(clock), clock=clock)
    baseline, searched = tuner.trials(study="w", storage=store).records
    assert baseline.state == "complete" and baseline.epochs_run == 10
    expected = ("pruned", 5) if share else ("complete", 10)  # without a share, as a worker started by hand
    assert (searched.state, searched.epochs_run) == expected


def test_a_kept_share_stops_the_last_keras_tuner_trial(store):
    clock = Clock()
    tuner.search(["space=basenet", "data=synthetic", "epochs=10"],
                 tuner.SearchOptions(trials=1, storage=store, study="k", timeout=2000, reeval_share=0.25,
                                     engine="keras-tuner"), runner=_clocked_runner(clock), clock=clock)
    baseline, searched = [r for r in tuner.trials(study="k", storage=store).records if "reeval_of" not in r.tags]
    assert baseline.state == "complete" and baseline.epochs_run == 10
    assert (searched.state, searched.epochs_run) == ("pruned", 5)
    assert searched.reason == "stopped at epoch 5: the search's time was up"
    assert searched.tags["engine"] == "keras-tuner" and searched.val_accuracy == 0.5  # scored as far as it got


def test_the_search_phase_end_does_not_stop_the_only_trial(store):
    clock = Clock()
    # No baselines: past the search phase's end (750 s) at epoch 8, the first trial is the search's only model.
    tuner.search(["space=basenet", "data=synthetic", "epochs=10"],
                 tuner.SearchOptions(trials=1, storage=store, study="s", timeout=1000, reeval_share=0.25,
                                     baselines=False), runner=_clocked_runner(clock), clock=clock)
    records = [r for r in tuner.trials(study="s", storage=store).records if "reeval_of" not in r.tags]
    assert [(r.state, r.epochs_run) for r in records] == [("complete", 10)]


@pytest.mark.parametrize("options, expected", [
    ({}, (8, 0.0, 0.0)),  # no --timeout: no share of it to keep
    ({"timeout": 1500}, (8, 0.25, 0.0)),
    ({"timeout": 1500, "sampler": "tpe"}, (8, 0.25, 0.0)),
    ({"timeout": 1500, "sampler": "random"}, (0, 0.0, 0.0)),  # another sampler: the user's own strategy
    ({"timeout": 1500, "engine": "keras-tuner"}, (0, 0.0, 0.0)),
    ({"timeout": 1500, "objective": "accuracy,params"}, (0, 0.0, 0.0)),
    ({"timeout": 1500, "warm_start": 0, "reeval_share": 0.1, "climb": 0.2}, (0, 0.1, 0.2)),  # given values win
])
def test_the_default_strategy_starts_from_the_study_and_picks_by_the_mean(options, expected):
    resolved = tuner.SearchOptions(**options).resolved()
    assert (resolved.warm_start, resolved.reeval_share, resolved.climb) == expected


def test_by_default_the_searched_trials_start_as_warm_starts_within_the_budget(store):
    tuner.search(["space=improved", *SYN], tuner.SearchOptions(trials=3, storage=store, study="d", seed=1),
                 runner=FakeRunner())
    records = tuner.trials(study="d", storage=store).records
    # 3 of the default 8 warm starts fit the budget of 3; none is left queued.
    assert [r.tags.get("warm_start") for r in records] == [None, None, 0, 1, 2]
    assert [r.state for r in records] == ["complete"] * 5
