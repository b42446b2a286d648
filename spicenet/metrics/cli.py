"""CLI verbs of spicenet.metrics: ``spicenet metrics train-features {mnist,fashion}``."""

from __future__ import annotations

import argparse

# torch is imported only when the verb runs: the CLI must start fast for every other verb.
FAMILIES = ("mnist", "fashion")


def _train_features(args: argparse.Namespace) -> dict:
    from spicenet.metrics.features import feature_cache_path, train_features

    out = args.output or feature_cache_path(args.family)
    net, info = train_features(
        args.family, args.source, args.data, epochs=args.epochs, seed=args.seed,
        n_train=None if args.n_train <= 0 else args.n_train, out=out,
    )
    return {"output": str(out), **info.__dict__}


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``metrics train-features``."""
    p = subparsers.add_parser("metrics", help="image-quality metrics (own feature net for FID/KID/accuracy)")
    sub = p.add_subparsers(dest="metrics_command", required=True)
    t = sub.add_parser("train-features", help="train and cache the feature net of a dataset family")
    t.add_argument("family", choices=FAMILIES)
    t.add_argument("--source", default="auto", choices=("auto", "npz", "idx", "download", "sample"),
                   help="data source (default: auto = IDX or npz found in --data / $SPICENET_DATA / ../shared/data)")
    t.add_argument("--data", default=None, help="data directory or npz file")
    t.add_argument("--epochs", type=int, default=None, help="default: 20 below 2000 images, else 3")
    t.add_argument("--n-train", type=int, default=20000, help="class-balanced training subset (<= 0: all)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("-o", "--output", default=None, help="weights file (default: the versioned cache path)")
    t.set_defaults(handler=_train_features)
