"""The command-line options the search benchmarks share: one space on the shared birds, a budget, several seeds."""

from __future__ import annotations

import argparse
from pathlib import Path


def search_parser(doc: str, *, epochs: int | None,
                  epochs_help: str = "epochs of every trial") -> argparse.ArgumentParser:
    """``--data-dir --space --image-size --trials --epochs --seeds --out``; ``doc``'s first line describes it."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--data-dir", default="../shared/data/cub200_subset")
    parser.add_argument("--space", default="basenet")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--epochs", type=int, default=epochs, help=epochs_help)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--out", default=None, help="write the rows as JSON here")
    return parser


def birds_words(args: argparse.Namespace) -> list[str]:
    """The ``key=value`` words of the benchmark's experiment (``epochs=`` only when given)."""
    words = [f"space={args.space}", "data=cub200", f"data_dir={Path(args.data_dir).resolve()}",
             f"image_size={args.image_size}"]
    return words + ([f"epochs={args.epochs}"] if args.epochs else [])
