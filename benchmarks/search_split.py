"""Where a pinned 6-trial BaseNet search's time goes: the whole search's wall clock against the sum of the trials'
own seconds (build, fit, evaluate, save), for the checkout at TREE (to compare two checkouts run one after the other).

    .venv/bin/python benchmarks/search_split.py TREE
"""
import sys, time, json, tempfile
tree = sys.argv[1]
sys.path.insert(0, tree + "/benchmarks"); sys.path.insert(0, tree)
import overhead, keras
from search_spaces import get_space
from tuner.data import load_dataset
from tuner.runner import model_spec
import tuner
params = overhead.pinned("basenet", 3)
data = load_dataset("cub200", data_dir="/work/shared/data/cub200_subset", image_size=32)
space = get_space("basenet"); spec = model_spec(data)
keras.utils.set_random_seed(0)
space.build(params, spec).fit(data.x_train[:128], data.y_train[:128], epochs=1, batch_size=32, verbose=0)
with tempfile.TemporaryDirectory() as tmp:
    t = time.perf_counter()
    res = tuner.search(overhead.words("basenet", params, "/work/shared/data/cub200_subset", 32), trials=6,
                       storage=f"sqlite:///{tmp}/c.db", study="o", baselines=False, seed=0, artifacts=tmp)
    wall = time.perf_counter() - t
    recs = tuner.trials(study="o", storage=f"sqlite:///{tmp}/c.db").records
print(tree, "wall", round(wall, 2), "trial seconds", [round(r.seconds, 2) for r in recs], "sum", round(sum(r.seconds for r in recs), 2))
