"""Command line: ``conceptlib reproduce|catalogue``, a thin layer over the library.

Bad input of any kind ends with one line ``conceptlib: error: ...`` on stderr and
exit status 2.
"""

from __future__ import annotations

import argparse
import sys

from conceptlib.errors import ConceptlibError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="conceptlib",
        description="Visual concepts in a fully convolutional VAE: a reproduction.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    rep = sub.add_parser(
        "reproduce", help="run the whole pipeline and write metrics.json and figures"
    )
    rep.add_argument(
        "--profile",
        default=None,
        help="smoke | quick | paper | a YAML path (default: $CONCEPTLIB_PROFILE, "
        "else paper with a CUDA GPU, else quick)",
    )
    rep.add_argument("--out", required=True, help="output folder")
    rep.add_argument(
        "--data",
        default=None,
        help="embedded | an IDX folder | a torchvision root | "
        "a Keras mnist.npz (default: the profile's data.source)",
    )
    rep.add_argument("--seeds", type=int, default=1, help="number of seeds (default 1)")
    rep.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    rep.add_argument("--cache", default=None, help="run cache (default OUT/runs)")
    rep.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key, e.g. --set train.num_epochs=3 (repeatable)",
    )
    rep.add_argument("--no-figures", action="store_true", help="skip the PNG figures")
    rep.add_argument("--quiet", action="store_true", help="no progress output")
    cat = sub.add_parser("catalogue", help="print a concept catalogue")
    cat.add_argument("name", nargs="?", default="mnist", help="name or CSV path")
    return parser


def _reproduce(args: argparse.Namespace) -> int:
    from conceptlib.config import default_profile, load_config
    from conceptlib.reproduce import format_table, reproduce
    from conceptlib.train import resolve_device

    resolve_device(args.device)  # fail early on --device cuda without a GPU
    overrides = list(args.overrides)
    if args.data is not None:
        overrides.append(f"data.source={args.data}")
    cfg = load_config(args.profile or default_profile(), overrides)
    metrics = reproduce(
        cfg,
        args.out,
        num_seeds=args.seeds,
        device=args.device,
        cache_dir=args.cache,
        progress=not args.quiet,
        figures=not args.no_figures,
    )
    if not args.quiet:
        for split in ("test_digits", "val", "test_concepts"):
            print(format_table(metrics, split))
    return 0


def _catalogue(args: argparse.Namespace) -> int:
    from conceptlib.concepts import load_catalogue

    cat = load_catalogue(args.name)
    print(f"{'label':>5}  {'name':<18} digit variant   x    y    w    h   sd")
    for i, name in enumerate(cat.names):
        x, y, w, h = cat.box[i]
        print(
            f"{cat.labels[i]:>5}  {name:<18} {cat.digit[i]:>5} {cat.variant[i]:>7} "
            f"{x:>4g} {y:>4g} {w:>4g} {h:>4g} {cat.sd[i]:>4g}"
        )
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``conceptlib`` command; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "reproduce":
            return _reproduce(args)
        return _catalogue(args)
    except ConceptlibError as exc:
        print(f"conceptlib: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("conceptlib: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
