"""Where a pinned BaseNet search's time goes: the whole search's wall clock against the sum of the trials' own
seconds (build, fit, evaluate, save), with the ``tuner`` package of the checkout at TREE, so that two checkouts can
be compared one after the other (the pinned configuration and the warm-up are ``overhead.py``'s, from this folder).

    .venv/bin/python benchmarks/search_split.py TREE --data-dir ../shared/data/cub200_subset
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tree", help="the checkout whose tuner package runs the search")
    parser.add_argument("--data-dir", default="../shared/data/cub200_subset")
    parser.add_argument("--trials", type=int, default=6)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    data_dir = str(Path(args.data_dir).resolve())
    spec_file = importlib.util.spec_from_file_location("overhead", Path(__file__).with_name("overhead.py"))
    overhead = importlib.util.module_from_spec(spec_file)
    spec_file.loader.exec_module(overhead)
    sys.path.insert(0, str(Path(args.tree).resolve()))  # ahead of the path overhead.py added
    for name in [m for m in sys.modules if m == "tuner" or m.startswith(("tuner.", "search_spaces"))]:
        del sys.modules[name]

    import tuner
    from search_spaces import get_space
    from tuner.data import load_dataset
    from tuner.trial import model_spec

    params = overhead.pinned("basenet", args.epochs)
    data = load_dataset("cub200", data_dir=data_dir, image_size=32)
    overhead.warm_up(get_space("basenet"), params, model_spec(data), data, int(params["batch_size"]))
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/split.db"
        start = time.perf_counter()
        tuner.search(overhead.words("basenet", params, data_dir, 32),
                     tuner.SearchOptions(trials=args.trials, storage=url, study="split", baselines=False, seed=0,
                                         artifacts=tmp))
        wall = time.perf_counter() - start
        seconds = [r.seconds for r in tuner.trials(study="split", storage=url).records]
    print(f"{tuner.__file__}: search {wall:.2f} s, trials {', '.join(f'{s:.2f}' for s in seconds)} "
          f"(sum {sum(seconds):.2f} s)")


if __name__ == "__main__":
    main()
