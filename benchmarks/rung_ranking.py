"""Does early validation accuracy rank configurations? Spearman correlation of epoch-k with final accuracy.

A pruner's first rung is only as good as the ranking it makes: if the validation accuracy after k epochs does not
order trials as their final accuracy does, pruning at k throws away slow starters. This reads the complete trials of
kept benchmark studies (``search_quality.py --keep DIR``) and, for each k, correlates the accuracy at epoch k with the
trial's best validation accuracy over all its epochs, over the trials that trained more than k epochs.

    .venv/bin/python benchmarks/rung_ranking.py /work/sq/studies --max-k 12
"""

from __future__ import annotations

import argparse
from pathlib import Path


def curves(folder: Path) -> list[list[float]]:
    """Per-epoch validation accuracy of every complete trial in the study stores below ``folder``."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    out = []
    for db in sorted(folder.rglob("study.db")):
        storage = f"sqlite:///{db}"
        for summary in optuna.study.get_all_study_summaries(storage):
            study = optuna.load_study(study_name=summary.study_name, storage=storage)
            for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
                if t.user_attrs.get("reeval_of") is not None or t.user_attrs.get("reproduce"):
                    continue
                history = t.user_attrs.get("history") or {}
                if isinstance(history.get("val_accuracy"), list):  # cnntune's record
                    values = [float(v) for v in history["val_accuracy"]]
                else:  # the plain script's {epoch: value}
                    values = [float(history[k]) for k in sorted(history, key=int)]
                if values:
                    out.append(values)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--max-k", type=int, default=12)
    args = parser.parse_args()
    from scipy.stats import spearmanr

    data = curves(args.folder)
    print(f"{len(data)} complete trials")
    print("| epoch k | trials longer than k | Spearman rho (epoch k vs best) |")
    print("|---|---|---|")
    for k in range(1, args.max_k + 1):
        rows = [c for c in data if len(c) > k]
        if len(rows) < 5:
            break
        rho = spearmanr([c[k - 1] for c in rows], [max(c) for c in rows]).statistic
        print(f"| {k} | {len(rows)} | {rho:.2f} |")


if __name__ == "__main__":
    main()
