"""Checks, from the host, a study that workers in containers searched (``deploy/container-test.sh``).

    python deploy/check_study.py --storage URL --study NAME --trials N --artifacts HOST_DIR --log W1.log --log W2.log

Passes (exit 0) when every trial of the study is complete, the study holds exactly N searched trials plus its
baselines, every worker log says the worker ran at least one trial and the logs add up to all trials, and every
model file a trial recorded is in the shared artifacts folder (the workers' ``/artifacts`` is HOST_DIR here).
Prints one line per trial and a summary; a failed check is one ``container-test:`` line on stderr and exit 1.
``--delete`` removes the study from the storage after it passed (a failed one stays, to be looked at).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from tuner import api
from tuner.errors import CnntuneError
from tuner.store import open_storage

_RAN = re.compile(r"^ran (\d+) trials? \((\d+) complete\)", re.MULTILINE)
IN_CONTAINER = "/artifacts"


def fail(message: str) -> None:
    print(f"container-test: {message}", file=sys.stderr)
    sys.exit(1)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--storage", required=True)
    parser.add_argument("--study", required=True)
    parser.add_argument("--trials", type=int, required=True, help="searched trials the study must hold")
    parser.add_argument("--artifacts", type=Path, help="host folder mounted at /artifacts in the workers")
    parser.add_argument("--log", action="append", default=[], type=Path, help="a worker's output (repeat)")
    parser.add_argument("--delete", action="store_true", help="delete the study once it passed")
    args = parser.parse_args(argv)

    try:
        records = api.trials(study=args.study, storage=args.storage).records
    except CnntuneError as exc:
        fail(str(exc))
    for r in records:
        acc = "-" if r.val_accuracy is None else f"{100 * r.val_accuracy:.1f}%"
        print(f"trial {r.number:>2} {r.state:<9} {r.baseline or 'searched':<12} val {acc:>6} {r.model_path or ''}")
    searched = [r for r in records if r.baseline is None]
    baselines = [r for r in records if r.baseline is not None]
    if any(r.state != "complete" for r in records):
        fail(f"not all trials are complete: {[(r.number, r.state, r.reason) for r in records if r.state != 'complete']}")
    if len(searched) != args.trials or not baselines:
        fail(f"expected {args.trials} searched trials and the baselines, found {len(searched)} and {len(baselines)}")

    ran = []
    for log in args.log:
        found = _RAN.findall(log.read_text(errors="replace"))
        if not found or int(found[-1][0]) < 1:
            fail(f"worker log {log} shows no trial run by that worker")
        ran.append(int(found[-1][0]))
    if args.log and sum(ran) != len(records):
        fail(f"the workers ran {ran} trials, the study holds {len(records)}")

    if args.artifacts is not None:
        saved = [r for r in records if r.model_path]
        if not saved:
            fail("no trial recorded a model file")
        for r in saved:
            if not r.model_path.startswith(IN_CONTAINER + "/"):
                fail(f"trial {r.number}'s model file is not under {IN_CONTAINER}: {r.model_path!r}")
            host = args.artifacts / r.model_path[len(IN_CONTAINER) + 1:]
            if not host.exists():
                fail(f"trial {r.number}'s model file is not in the shared artifacts folder: {host}")

    per_worker = f", per worker {ran}" if ran else ""
    print(f"study {args.study}: {len(records)} trials complete ({len(baselines)} baselines, {len(searched)} searched)"
          f"{per_worker}" + (", model files in the shared artifacts volume" if args.artifacts else ""))
    if args.delete:
        import optuna

        optuna.delete_study(study_name=args.study, storage=open_storage(args.storage))


if __name__ == "__main__":
    main()
