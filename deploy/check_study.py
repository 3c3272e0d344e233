"""Checks, from the host, a study that workers in containers searched (``deploy/container-test.sh``).

    python deploy/check_study.py --storage URL --study NAME --trials N --artifacts s3://BUCKET/PREFIX \\
        [--log W1.log ...] [--resumed-from 2 --not-by w1] [--delete]

Passes (exit 0) when the study holds exactly N searched trials that finished complete, in the N places of its budget,
plus its baselines, all complete; any other trial is one that a dead or stopped worker left (``worker_died`` or
``interrupted``) and that was retried, so that nothing is lost. Every model file a trial recorded is under
``--artifacts`` and is there: a URL of object storage, or a host folder that the workers mounted at ``/artifacts``.
With ``--log``, every worker log says the worker ran at least one trial and the logs add up to the complete trials.
With ``--resumed-from E``, a retry resumed its predecessor's checkpoint at epoch E or later, and with ``--not-by W``
it ran on another worker than W. Prints one line per trial and a summary; a failed check is one ``container-test:``
line on stderr and exit 1. ``--delete`` removes the study from the storage after it passed (a failed one stays, to be
looked at).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from tuner import api
from tuner.errors import CnntuneError
from tuner.records import FailureKind
from tuner.store import Budget, Location, is_url, open_storage

_RAN = re.compile(r"^ran (\d+) trials? \((\d+) complete\)", re.MULTILINE)
IN_CONTAINER = "/artifacts"
_LEFT_BY_A_WORKER = (FailureKind.WORKER_DIED, FailureKind.INTERRUPTED)


def fail(message: str) -> None:
    print(f"container-test: {message}", file=sys.stderr)
    sys.exit(1)


def _stored(model_path: str, artifacts: str) -> Location:
    """Where the host finds a trial's model file."""
    if is_url(artifacts):
        if not model_path.startswith(artifacts.rstrip("/") + "/"):
            fail(f"a model file is not under {artifacts}: {model_path!r}")
        return Location.of(model_path)
    if not model_path.startswith(IN_CONTAINER + "/"):
        fail(f"a model file is not under {IN_CONTAINER}: {model_path!r}")
    return Location.of(Path(artifacts) / model_path[len(IN_CONTAINER) + 1:])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--storage", required=True)
    parser.add_argument("--study", required=True)
    parser.add_argument("--trials", type=int, required=True, help="searched trials the study must hold")
    parser.add_argument("--artifacts", help="the study's bucket URL, or the host folder mounted at /artifacts")
    parser.add_argument("--log", action="append", default=[], type=Path, help="a worker's output (repeat)")
    parser.add_argument("--resumed-from", type=int, help="a retry resumed at this epoch or later")
    parser.add_argument("--not-by", help="the worker that must not have run that retry (the one killed)")
    parser.add_argument("--delete", action="store_true", help="delete the study once it passed")
    args = parser.parse_args(argv)

    import optuna

    try:
        records = api.trials(study=args.study, storage=args.storage).records
        attrs = {t.number: t.user_attrs for t in optuna.load_study(study_name=args.study,
                                                                   storage=open_storage(args.storage)).trials}
    except (CnntuneError, KeyError) as exc:
        fail(str(exc))
    for r in records:
        acc = "-" if r.val_accuracy is None else f"{100 * r.val_accuracy:.1f}%"
        a = attrs[r.number]
        print(f"trial {r.number:>2} {r.state:<9} {r.kind.value if r.kind else '':<12} {r.baseline or 'searched':<12} "
              f"val {acc:>6} worker {a.get('worker', '-'):<10} retry_of {r.tags.get('retry_of', '-')!s:<3} "
              f"resumed_from_epoch {a.get('resumed_from_epoch', '-')!s:<3} {r.model_path or ''}")
    retried = {r.tags["retry_of"] for r in records if "retry_of" in r.tags}
    lost = [r for r in records if r.state != "complete" and not (r.kind in _LEFT_BY_A_WORKER and r.number in retried)]
    if lost:
        fail(f"trials neither complete nor retried: {[(r.number, r.state, r.reason) for r in lost]}")
    places = Budget(args.trials).places(records)
    baselines = [r for r in records if r.baseline is not None and r.state == "complete"]
    if len(places) != args.trials or any(r.state != "complete" for r in places) or not baselines:
        fail(f"expected {args.trials} complete searched trials and the baselines, found "
             f"{[(r.number, r.state) for r in places]} and {len(baselines)} baselines")

    ran = []
    for log in args.log:
        found = _RAN.findall(log.read_text(errors="replace"))
        if not found or int(found[-1][0]) < 1:
            fail(f"worker log {log} shows no trial run by that worker")
        ran.append(int(found[-1][1]))
    complete = sum(1 for r in records if r.state == "complete")
    if args.log and sum(ran) != complete:
        fail(f"the workers completed {ran} trials, the study holds {complete} complete")

    if args.resumed_from is not None:
        resumed = [r for r in records if "retry_of" in r.tags and r.state == "complete"
                   and int(attrs[r.number].get("resumed_from_epoch") or 0) >= args.resumed_from
                   and attrs[r.number].get("worker") != args.not_by]
        if not resumed:
            fail(f"no retry resumed a checkpoint at epoch {args.resumed_from} or later"
                 + (f" on a worker other than {args.not_by}" if args.not_by else ""))

    if args.artifacts is not None:
        saved = [r for r in records if r.model_path]
        if not saved:
            fail("no trial recorded a model file")
        for r in saved:
            if not _stored(r.model_path, args.artifacts).exists():
                fail(f"trial {r.number}'s model file is not in the study's artifacts: {r.model_path}")

    per_worker = f", per worker {ran} complete" if ran else ""
    print(f"study {args.study}: {len(places)} searched trials complete, {len(baselines)} baselines, "
          f"{len(records) - complete} retried{per_worker}" + (f", model files in {args.artifacts}" if args.artifacts
                                                              else ""))
    if args.delete:
        optuna.delete_study(study_name=args.study, storage=open_storage(args.storage))


if __name__ == "__main__":
    main()
