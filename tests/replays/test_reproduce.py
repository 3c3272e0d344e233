"""``reproduce`` (baselines over seeds, resume, claims), ``best --reeval`` (re-ranking by the mean) and bad input.

Only one test trains for real (two 1-epoch runs on synthetic data); the others pass a fake trial runner that returns
chosen accuracies (``runner=``), which is how the resume and ranking logic is pinned down exactly and fast.
"""

from __future__ import annotations

import csv
import json

import pytest

import tuner
from conftest import SYN, FakeRunner, one_line_error, run_cli
from tuner import api
from tuner.errors import SpaceError, StorageError
from tuner.records import TrialRecord
from tuner.replays import _reproduce as rp
from tuner.replays import reevaluate
from tuner.spec import Claim
from tuner.store import REEVAL_SEED_STRIDE, config_key, top_configs
from tuner.store import Budget


# -- reproduce ---------------------------------------------------------------------------------------------------
def test_cli_reproduce_trains_every_baseline_and_writes_rows(store, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    result = run_cli("reproduce", "space=normalization", *SYN, "--seeds", "1", "--storage", store, "--out", str(out))
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())  # Rich wraps long lines at the terminal width
    assert "basenet" in text and "31.68" in text and "featurewise normalization beats none" in text
    with (out / "reproduce_normalization.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert [r["baseline"] for r in rows] == ["basenet", "normalization"]
    assert all(r["runs"] == "1" and r["seeds"] == "0" and 0 <= float(r["test_mean"]) <= 100 for r in rows)
    assert float(rows[0]["diff_pp"]) == pytest.approx(float(rows[0]["test_mean"]) - 31.68, abs=1e-2)
    payload = json.loads((out / "reproduce_normalization.json").read_text())
    assert len(payload["rows"]) == 2 and payload["claims"][0]["status"] in ("held", "not held")
    records = tuner.trials(study="reproduce-normalization", storage=store).records
    assert [(r.baseline, r.seed, r.tags.get("reproduce")) for r in records] == [("basenet", 0, True),
                                                                                  ("normalization", 0, True)]
    assert all(r.state == "complete" and r.model_path for r in records)
    # Reproductions are no search results: outside the budget, and not the best unless asked.
    assert not any(Budget.holds_place(r) for r in records)
    with pytest.raises(StorageError, match="--include-replays"):
        tuner.best(study="reproduce-normalization", storage=store)
    assert tuner.best(study="reproduce-normalization", storage=store, replays=True).best.tags["reproduce"]


def test_reproduce_modern_trains_its_three_baselines(store, tmp_path):
    result = run_cli("reproduce", "space=modern", *SYN, "--seeds", "1", "--storage", store, "--out", str(tmp_path))
    assert result.exit_code == 0, result.output
    with (tmp_path / "reproduce_modern.csv").open() as fh:
        rows = {r["baseline"]: r for r in csv.DictReader(fh)}
    assert list(rows) == ["basenet", "final", "resnet20"]
    assert rows["resnet20"]["reported"] == "" and rows["final"]["reported"] == "55.6"  # a recipe: no study figure
    assert all(r["runs"] == "1" and 0 <= float(r["test_mean"]) <= 100 for r in rows.values())
    records = {r.baseline: r for r in tuner.trials(study="reproduce-modern", storage=store).records}
    assert records["resnet20"].params["body"] == "resnet" and records["resnet20"].params["lr_schedule"] == "cosine"
    payload = json.loads((tmp_path / "reproduce_modern.json").read_text())
    assert [(c["better"], c["worse"]) for c in payload["claims"]] == [("final", "basenet")]


def test_reproduce_resumes_after_interruption_without_repeating_runs(store):
    words = ["space=normalization", *SYN]
    first = FakeRunner(interrupt_on=2)
    with pytest.raises(KeyboardInterrupt):
        rp.reproduce(words, tuner.SearchOptions(storage=store), seeds=2, runner=first)
    assert len(first.calls) == 2
    done_pair = (first.calls[0][0]["normalize"], first.calls[0][1])

    second = FakeRunner()
    result = rp.reproduce(words, tuner.SearchOptions(storage=store), seeds=2, runner=second)
    pairs = [(params["normalize"], seed) for params, seed in second.calls]
    # 2 baselines x 2 seeds = 4 pairs; 1 completed before the interruption: 3 run now, the completed one is not among them.
    assert len(pairs) == 3 and done_pair not in pairs and len(set(pairs)) == 3
    assert sorted([done_pair, *pairs]) == [(False, 0), (False, 1), (True, 0), (True, 1)]
    assert [row.runs for row in result.rows] == [2, 2]
    records = tuner.trials(study="reproduce-normalization", storage=store).records
    assert [r.reason for r in records if r.state == "fail"] == ["interrupted"]
    assert not any(r.state in ("waiting", "running") for r in records)

    third = FakeRunner()
    again = rp.reproduce(words, tuner.SearchOptions(storage=store), seeds=2, runner=third)
    assert third.calls == [] and again.ran == []
    more = FakeRunner()
    rp.reproduce(words, tuner.SearchOptions(storage=store), seeds=3, runner=more)  # one more seed: only the new pairs
    assert sorted(seed for _, seed in more.calls) == [2, 2]


def test_cli_interrupted_reproduce_says_how_to_resume(store, tmp_path):
    # A space whose build is interrupted (as by Ctrl-C): the CLI records the run and says how to resume.
    space = tmp_path / "ctrlc.py"
    space.write_text("from search_spaces import normalization\n"
                     "NAME = 'ctrlc'\n"
                     "BASELINES = normalization.BASELINES\n"
                     "declare = normalization.declare\n"
                     "def build(params, spec):\n"
                     "    raise KeyboardInterrupt\n")
    result = run_cli("reproduce", f"space={space}", *SYN, "--seeds", "1", "--storage", store, "--quiet")
    assert result.exit_code == 130 and "rerun the same command" in result.output
    records = tuner.trials(study="reproduce-ctrlc", storage=store).records
    assert [(r.state, r.reason) for r in records] == [("fail", "interrupted")]


def test_reproduce_all_spaces_one_row_per_baseline_and_claims_from_means(store, tmp_path):
    from search_spaces import SPACES

    # Planted accuracies: normalization hurts, BN helps, everything else is equal.
    def accuracy(params, seed):
        test = 0.30 if params.get("normalize") else 0.40
        if params.get("bn_conv") == "after" and params.get("bn_dense") == "after":
            test = 0.60
        return test, test + 0.01 * seed

    result = rp.reproduce(["space=all", *SYN], tuner.SearchOptions(storage=store), seeds=2,
                          runner=FakeRunner(accuracy=accuracy))
    assert result.label == "all"
    assert len(result.rows) == sum(len(m.BASELINES) for m in SPACES.values())
    assert {p.study for p in result.spaces} == {f"reproduce-{name}" for name in SPACES}
    claims = {(c.space, c.better, c.worse): c for c in result.claims}
    norm = claims[("normalization", "normalization", "basenet")]
    assert norm.status == "not held" and norm.better_mean == pytest.approx(30.5) and norm.worse_mean == pytest.approx(40.5)
    assert claims[("batchnorm", "after_all", "no_bn")].status == "held"
    # epochs=1 pins both sides of "20 epochs beat 5" to the same config.
    epochs = claims[("epochs", "epochs20", "epochs5")]
    assert epochs.status == "untestable" and "identical" in epochs.why
    paths = rp.write_reproduction(result, tmp_path)
    assert [p.name for p in paths] == ["reproduce_all.csv", "reproduce_all.json"]
    assert len(json.loads(paths[1].read_text())["rows"]) == len(result.rows)


def test_claims_logic_with_planted_numbers():
    def row(name, mean, std=None, runs=3, reported=None):
        return rp.ReproRow(space="s", baseline=name, reported=reported, runs=runs if mean is not None else 0,
                           diverged=0, val_mean=mean, val_std=std, test_mean=mean, test_std=std, diff_pp=None)

    rows = [row("a", 50.0, 1.0, reported=40.0), row("b", 40.0, 1.0, reported=30.0), row("c", 41.0, 5.0),
            row("d", None), row("e", 45.0)]
    claims = [Claim("a", "b", "a beats b"), Claim("b", "a", "b beats a"), Claim("c", "b", "c beats b"),
              Claim("a", "d", "a beats d"), Claim("a", "e", "a beats e"), Claim("a", "zzz", "typo")]
    configs = {"a": {"x": 1}, "b": {"x": 2}, "c": {"x": 3}, "d": {"x": 4}, "e": {"x": 1}, "zzz": {"x": 9}}
    out = {c.text: c for c in rp.check_claims("s", claims, rows, configs)}
    assert out["a beats b"].status == "held" and out["a beats b"].diff_pp == pytest.approx(10.0)
    assert out["a beats b"].better_reported == 40.0 and out["a beats b"].why == ""
    assert out["b beats a"].status == "not held"
    assert out["c beats b"].status == "held" and "noise" in out["c beats b"].why
    assert out["a beats d"].status == "untestable" and "no completed run of d" in out["a beats d"].why
    assert out["a beats e"].status == "untestable" and "identical" in out["a beats e"].why
    assert out["typo"].status == "untestable" and "unknown baseline" in out["typo"].why
    # Without configs, identical configs are not detected: the means decide.
    assert rp.check_claims("s", [Claim("a", "e", "t")], rows)[0].status == "held"


def test_every_space_claims_name_its_own_baselines():
    from search_spaces import SPACES

    required = {("normalization", "normalization", "basenet"), ("augmentation", "normalization", "zoom1.2"),
                ("augmentation", "normalization", "rotation90"), ("deeper_net", "third5x5_pool_end", "basenet_body"),
                ("batchnorm", "after_all", "no_bn"), ("epochs", "epochs20", "epochs5")}
    found = set()
    for name, module in SPACES.items():
        names = {b.name for b in module.BASELINES}
        reported = {b.name: b.reported for b in module.BASELINES}
        for claim in getattr(module, "CLAIMS", []):
            assert {claim.better, claim.worse} <= names, (name, claim)
            assert reported[claim.better] > reported[claim.worse], (name, claim)  # the study's own numbers agree
            found.add((name, claim.better, claim.worse))
    assert required <= found


# -- best --reeval -----------------------------------------------------------------------------------------------
def _planted_search(store):
    """A basenet study with a baseline and 3 searched trials whose single-run values are planted."""
    script = iter([0.50, 0.90, 0.70, 0.60])
    tuner.search(["space=basenet", *SYN],
                 tuner.SearchOptions(trials=3, storage=store, study="s", sampler="random", seed=1),
                 runner=FakeRunner(accuracy=lambda params, seed: (next(script), 0.5)))
    records = tuner.trials(study="s", storage=store).records
    assert [r.val_accuracy for r in records] == [0.50, 0.90, 0.70, 0.60]
    return records


def test_best_reeval_reranks_by_the_mean_of_new_seeds(store):
    records = _planted_search(store)
    lucky, solid = records[1], records[2]  # single runs 0.90 and 0.70
    # Re-evaluated: the lucky config is really ~0.41, the other ~0.66.
    means = {config_key(lucky.params): 0.40, config_key(solid.params): 0.65}
    # The k-th new seed of a trial is its seed + k * stride: +0.01 * k makes the spread known.
    runs = FakeRunner(accuracy=lambda params, seed: (means[config_key(params)] + 0.01 * (seed // REEVAL_SEED_STRIDE),
                                                      0.3))
    report = reevaluate(study="s", storage=store, top=2, seeds=2, runner=runs)
    assert [row.trial for row in report.rows] == [solid.number, lucky.number]
    assert [row.original_rank for row in report.rows] == [2, 1]
    win = report.winner
    assert win.trial == solid.number and win.original_val == pytest.approx(70.0) and win.runs == 2
    assert win.val_mean == pytest.approx(66.5) and win.val_std == pytest.approx(0.7071, abs=1e-3)
    assert win.test_mean == pytest.approx(30.0)
    assert report.lead_pp == pytest.approx(25.0)
    # New seeds differ from the originals, and every run is tagged with the trial it re-evaluates.
    originals = {r.seed for r in records}
    assert all(seed not in originals for _, seed in runs.calls)
    assert sorted(seed for _, seed in runs.calls) == sorted(
        [lucky.seed + REEVAL_SEED_STRIDE * k for k in (1, 2)] + [solid.seed + REEVAL_SEED_STRIDE * k for k in (1, 2)])
    reeval_runs = [r for r in tuner.trials(study="s", storage=store).records if "reeval_of" in r.tags]
    assert sorted(r.tags["reeval_of"] for r in reeval_runs) == sorted([lucky.number] * 2 + [solid.number] * 2)

    # Rerun: completed runs are reused; more seeds only add the missing ones.
    again = FakeRunner(accuracy=lambda params, seed: (means[config_key(params)], 0.3))
    assert reevaluate(study="s", storage=store, top=2, seeds=2, runner=again).ran == [] and again.calls == []
    reevaluate(study="s", storage=store, top=2, seeds=3, runner=again)
    assert len(again.calls) == 2
    # Once re-evaluated, `best` picks by the mean and says so; the runs themselves are never the pick, and they are
    # not part of the searched-trials budget.
    report = tuner.best(study="s", storage=store)
    assert report.best.number == solid.number and report.single_run_best.number == lucky.number
    assert report.picked_by_mean.runs == 3 and report.picked_by_mean.val_mean == pytest.approx(66.0)
    assert tuner.trials(study="s", storage=store).best == solid.number  # the table highlights the same trial
    text = " ".join(run_cli("best", "--study", "s", "--storage", store).output.split())
    assert f"best trial {solid.number}" in text and "picked by the mean validation accuracy of 3 new seeds" in text
    assert f"the single-run best is trial {lucky.number}" in text
    # With replays allowed, the single-run rule applies to every trial, re-evaluation runs included.
    with_replays = tuner.best(study="s", storage=store, replays=True)
    assert with_replays.best.number == lucky.number and with_replays.picked_by_mean is None
    assert "already holds 3" in tuner.search(["space=basenet", *SYN],
                                             tuner.SearchOptions(trials=3, storage=store, study="s")).message


def test_cli_best_reeval_prints_the_reranked_table_and_the_winner(store):
    records = _planted_search(store)
    means = {config_key(records[1].params): 0.40, config_key(records[2].params): 0.65}
    # The runs are trained here; the command then finds them all done and only ranks and prints.
    reevaluate(study="s", storage=store, top=2, seeds=2,
               runner=FakeRunner(accuracy=lambda params, seed: (means.get(config_key(params), 0.1), 0.3)))
    result = run_cli("best", "--study", "s", "--storage", store, "--reeval", "2", "--seeds", "2", "--quiet")
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())  # Rich wraps long lines at the terminal width
    assert f"winner by mean: trial {records[2].number}" in text
    assert f"single-run best (trial {records[1].number}) ranks 2 by the mean" in text


def test_top_configs_are_distinct_and_skip_replays():
    def rec(number, val, lr, **tags):
        return TrialRecord(number=number, state="complete", params={"learning_rate": lr}, val_accuracy=val, tags=tags)

    records = [rec(0, 0.9, 0.1), rec(1, 0.8, 0.1), rec(2, 0.7, 0.2), rec(3, 0.95, 0.3, reeval_of=2),
               rec(4, 0.99, 0.4, reproduce=True), rec(5, 0.6, 0.5)]
    assert [r.number for r in top_configs(records, 3)] == [0, 2, 5]


# -- bad input ---------------------------------------------------------------------------------------------------
def test_a_pin_that_contradicts_the_space_names_the_conflict(store):
    with pytest.raises(SpaceError, match="conv3_filters=106 contradicts body=basenet"):
        tuner.search(["space=deeper_net", "body=basenet", "conv3_filters=106", *SYN],
                     tuner.SearchOptions(storage=store))
    one_line_error(run_cli("search", "space=deeper_net", "body=basenet", "conv3_filters=106", "--storage", store),
                    "conv3_filters=106", "body=basenet")
    one_line_error(run_cli("search", "space=improved", "early_stopping=false", "patience=3", "--storage", store),
                    "patience=3", "early_stopping=false")
    # A pin that the other choices still allow stays valid.
    from tuner.experiment import parse_words

    assert parse_words(["space=deeper_net", "conv3_filters=106"]).pins == {"conv3_filters": 106}
    assert parse_words(["space=deeper_net", "body=third5x5_no_pool1", "conv3_filters=50"]).pins["conv3_filters"] == 50


@pytest.mark.parametrize(
    "args, needles",
    [
        (["reproduce", "space=augmentation", *SYN, "--seeds", "0"], ["--seeds", "0"]),
        (["reproduce", "space=nope"], ["unknown space 'nope'", "augmentation", "space=all"]),
        (["reproduce", *SYN], ["space=all"]),
        (["reproduce", "space=all", "frobnicate=1"], ["frobnicate"]),
        (["reproduce", "space=deeper_net", "body=basenet", "conv3_filters=106"], ["conv3_filters=106", "body=basenet"]),
        (["reproduce", "space=basenet", "--out", "/no/such/folder"], ["/no/such/folder"]),
        (["best", "--reeval", "0"], ["--reeval", "0"]),
        (["best", "--reeval", "2", "--seeds", "0"], ["--seeds", "0"]),
        (["best", "--seeds", "2"], ["--reeval"]),
    ],
)
def test_bad_reproduce_and_reeval_input_gets_one_line(store, args, needles):
    one_line_error(run_cli(*args, "--storage", store), *needles)


def test_spaces_lists_every_study_step_with_choices_and_baselines():
    from search_spaces import SPACES

    result = run_cli("spaces")
    assert result.exit_code == 0
    rows = {row["name"]: row for row in api.spaces()}
    steps = ["basenet", "normalization", "augmentation", "deeper_net", "batchnorm", "epochs", "improved", "transfer",
             "modern"]
    assert list(SPACES) == steps and set(rows) == set(SPACES)
    for name, row in rows.items():
        assert name in result.output and row["choices"] >= 1 and row["baselines"] >= 1


def test_reproduce_skips_bad_images_when_asked_and_remembers_it(store, tmp_path):
    from PIL import Image

    root = tmp_path / "imgs"
    for c, cls in enumerate(("a", "b")):
        (root / cls).mkdir(parents=True)
        for i in range(6):
            Image.new("RGB", (32, 32), (40 * i, 120 * c, 0)).save(root / cls / f"{i}.png")
    (root / "b" / "broken.png").write_bytes(b"not a png at all")
    words = ["space=normalization", "data=folder", f"data_dir={root}", "image_size=32", "epochs=1"]
    one_line_error(run_cli("reproduce", *words, "--seeds", "1", "--storage", store, "--quiet"), "broken.png")
    first = FakeRunner(interrupt_on=2)
    with pytest.raises(KeyboardInterrupt):
        rp.reproduce(words, tuner.SearchOptions(storage=store, skip_bad_images=True), seeds=1, runner=first)
    assert tuner.trials(study="reproduce-normalization", storage=store).meta["skip_bad_images"] is True
    # Resuming without the flag keeps it: the broken file does not stop the study it was skipped in.
    rest = FakeRunner()
    result = rp.reproduce(words, tuner.SearchOptions(storage=store), seeds=1, runner=rest)
    assert len(rest.calls) == 1 and [row.runs for row in result.rows] == [1, 1]
    cli = run_cli("reproduce", *words, "--seeds", "1", "--skip-bad-images", "--storage", store, "--quiet")
    assert cli.exit_code == 0 and "ran 0 runs" in cli.output
