"""Command line: ``conceptlib reproduce|explain|edit|scorecard|catalogue``.

Bad input of any kind ends with one line ``conceptlib: error: ...`` on stderr and
exit status 2. Modules that import torch are imported by the commands that need
them, after the input checks: bad input fails in a second.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from conceptlib.config import default_profile, load_config
from conceptlib.data.catalogue import load_catalogue
from conceptlib.data.mnist import load_mnist
from conceptlib.errors import ConceptlibError
from conceptlib.report.records import load_recorded, read_metrics, recorded_runs
from conceptlib.report.scorecard import format_markdown, format_text, judge
from conceptlib.report.text import format_table


class _Append(argparse.Action):
    """Collect ``--remove/--add/--move`` in command-line order as (kind, value)."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        ops = list(getattr(namespace, self.dest) or [])
        ops.append((option_string.lstrip("-"), values))
        setattr(namespace, self.dest, ops)


def _model_options(parser: argparse.ArgumentParser) -> None:
    """``--run``, ``--profile`` and ``--cache``: which concept model to use."""
    run = "a concept run's model.pt or folder (default: the profile's concept run in "
    parser.add_argument("--run", help=run + "--cache)")
    profile = "profile whose concept run to use (default as for reproduce)"
    parser.add_argument("--profile", help=profile)
    parser.add_argument("--cache", default="runs", help="run cache (default runs)")


def _reproduce_parser(sub) -> None:
    rep = sub.add_parser(
        "reproduce", help="run the whole pipeline and write metrics.json and figures"
    )
    rep.add_argument(
        "--profile",
        help="smoke | quick | paper | a YAML path (default: $CONCEPTLIB_PROFILE, "
        "else paper with a CUDA GPU, else quick)",
    )
    rep.add_argument("--out", required=True, help="output folder")
    rep.add_argument(
        "--data",
        help="embedded | an IDX folder | a torchvision root | "
        "a Keras mnist.npz (default: the profile's data.source)",
    )
    rep.add_argument("--seeds", type=int, default=1, help="number of seeds (default 1)")
    rep.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    rep.add_argument("--cache", help="run cache (default OUT/runs)")
    rep.add_argument("--set", dest="overrides", action="append", default=[],
                     metavar="KEY=VALUE", help="override a config key, e.g. --set "
                     "train.num_epochs=3 (repeatable)")  # fmt: skip
    rep.add_argument("--no-figures", action="store_true", help="skip the PNG figures")
    rep.add_argument("--quiet", action="store_true", help="no progress output")


#: The edit options: flag, metavar, help.
_EDITS = (
    ("--remove", "NAME", "switch a concept off (repeatable)"),
    ("--add", "NAME[@IMAGE]", "add a concept from its prototype, or as it appears "
     "in IMAGE (repeatable)"),
    ("--move", "NAME:DX,DY[,SCALE]", "move a concept by DX, DY pixels (right, "
     "down), optionally scaled (repeatable)"),
)  # fmt: skip


def _explain_parsers(sub) -> None:
    exp = sub.add_parser(
        "explain",
        help="rank the concepts a trained concept model sees in one image",
        description="Rank the catalogue concepts that the concept channels of a "
        "trained concept variant see in one 28x28 image.",
    )
    exp.add_argument(
        "image",
        help="a PNG/JPEG file, a .npy array (uint8 0..255 or float 0..1), "
        "or test:N / train:N for an MNIST digit",
    )
    _model_options(exp)
    exp.add_argument("--top", type=int, default=5, help="concepts to show (default 5)")
    exp.add_argument("--figure", help="write a PNG of the top concepts")
    exp.add_argument("--json", help="write the full ranking as JSON")
    edit = sub.add_parser(
        "edit",
        help="edit an image through the concept layer: remove, add, move concepts",
        description="Edit one 28x28 image through the concept layer of a trained "
        "concept variant, in the order the edits are given, and decode it.",
    )
    edit.add_argument("image", help="the image to edit, as for `explain`")
    for flag, metavar, help_ in _EDITS:
        edit.add_argument(flag, dest="ops", action=_Append, metavar=metavar, help=help_)
    _model_options(edit)
    edit.add_argument("--figure", help="write a PNG: before and after")
    edit.add_argument("--json", help="write the edit as JSON")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="conceptlib",
        description="Visual concepts in a fully convolutional VAE: a reproduction.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    _reproduce_parser(sub)
    _explain_parsers(sub)
    card = sub.add_parser(
        "scorecard",
        help="judge the paper's claims on recorded runs and on your own",
        description="Verdicts on each of the paper's claims as the paper means "
        "them, and on this project's stricter tests apart, with the counts "
        "reproduced / partly / not per run, for the recorded runs (RESULTS/paper, "
        "RESULTS/quick) and for each --run. A one-seed run is judged with the seed "
        "spread of RESULTS/quick.",
    )
    card.add_argument("--run", dest="runs", action="append", default=[],
                      metavar="DIR", help="an output folder of `conceptlib reproduce` "
                      "(or its metrics.json); repeatable")  # fmt: skip
    results = "recorded runs (default results)"
    card.add_argument("--results", default="results", help=results)
    markdown = "print a Markdown table instead"
    card.add_argument("--markdown", action="store_true", help=markdown)
    cat = sub.add_parser("catalogue", help="print a concept catalogue")
    cat.add_argument("name", nargs="?", default="mnist", help="name or CSV path")
    return parser


def _reproduce(args: argparse.Namespace) -> int:
    data = [] if args.data is None else [f"data.source={args.data}"]
    cfg = load_config(args.profile or default_profile(), args.overrides + data)
    # bad data or a bad catalogue fail here, in a second, before torch is imported
    mnist = load_mnist(cfg.data.source)
    load_catalogue(cfg.concepts.catalogue)

    import torch.distributed as dist  # torch: after the input checks

    from conceptlib.experiment.reproduce import reproduce
    from conceptlib.train.runtime import init_distributed, is_main, resolve_device

    device = resolve_device(args.device)  # fail early on --device cuda without a GPU
    device = init_distributed(device)  # joins torchrun's process group, if any
    main = is_main()
    try:
        metrics = reproduce(
            cfg, args.out, num_seeds=args.seeds, device=device, cache_dir=args.cache,
            progress=not args.quiet, figures=not args.no_figures, mnist=mnist,
        )  # fmt: skip
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    if not args.quiet and main:
        for split in ("test_digits", "val", "test_concepts"):
            print(format_table(metrics, split))
    return 0


def _concept_model(args: argparse.Namespace):
    """The concept model of ``--run``, else of the profile's run in ``--cache``."""
    from conceptlib.measures.explain import default_run  # torch: after the checks
    from conceptlib.model.readout import load_concept_model

    if args.run is not None:
        return load_concept_model(Path(args.run))
    cfg = load_config(args.profile or default_profile())
    run = default_run(cfg, args.cache)
    if not run.exists():
        p = cfg.profile
        cmd = f"conceptlib reproduce --profile {p} --out out/{p} --cache {args.cache}"
        what = f"no trained concept run for profile {p!r}; run `{cmd}` first"
        raise ConceptlibError(f"{run}: {what} or pass --run")
    return load_concept_model(run)


def _check_outputs(*paths: str | None) -> None:
    """Fail before any work when an output's folder does not exist."""
    for path in (Path(p) for p in paths if p is not None):
        if not path.parent.is_dir():
            raise ConceptlibError(f"{path}: folder {path.parent} does not exist")


def _explain(args: argparse.Namespace) -> int:
    from conceptlib.measures import explain as ex  # torch: after the input checks

    if args.top < 1:
        raise ConceptlibError(f"--top {args.top}: must be at least 1")
    _check_outputs(args.figure, args.json)
    cm = _concept_model(args)
    image, name = ex.read_image(args.image, cm.cfg.data.source)
    expl = ex.explain(cm, image)
    print(f"image: {name}\nmodel: {cm.path}")
    for warning in ex.image_warnings(image):
        print(f"warning: {warning}")
    print(ex.format_explanation(expl, args.top))

    def draw():  # matplotlib and torchvision: heavy, for --figure only
        from conceptlib.report.plots import plot_explanation

        return plot_explanation(expl, args.top, title=name)

    doc = {"image": name, "model": str(cm.path), **expl.to_dict()}
    ex.write_outputs(args.figure, draw, args.json, doc, indent=1)
    return 0


def _edit(args: argparse.Namespace) -> int:
    from conceptlib.experiment.editing import parse_steps, run_edit  # torch: late

    if not args.ops:
        raise ConceptlibError("nothing to do: give --remove, --add or --move")
    _check_outputs(args.figure, args.json)
    cm = _concept_model(args)
    steps = parse_steps(args.ops, cm)
    print(run_edit(cm, args.image, steps, args.cache, args.figure, args.json))
    return 0


def _scorecard(args: argparse.Namespace) -> int:
    runs = recorded_runs(args.results)
    # the seeded quick run's spread is what a one-seed run is judged against
    reference = load_recorded("quick", args.results)
    runs |= {run: read_metrics(run) for run in args.runs}
    if not runs:
        what = "no recorded runs (paper/, quick/) and no --run given"
        raise ConceptlibError(f"{args.results}: {what}")
    columns = {name: judge(metrics, reference) for name, metrics in runs.items()}
    print(format_markdown(columns) if args.markdown else format_text(columns))
    return 0


def _catalogue(args: argparse.Namespace) -> int:
    cat = load_catalogue(args.name)
    print(f"{'label':>5}  {'name':<18} digit variant   x    y    w    h   sd")
    for i, name in enumerate(cat.names):
        row = f"{cat.labels[i]:>5}  {name:<18} {cat.digit[i]:>5} {cat.variant[i]:>7}"
        print(row, " ".join(f"{v:>4g}" for v in (*cat.box[i], cat.sd[i])))
    return 0


_COMMANDS = {
    "reproduce": _reproduce,
    "explain": _explain,
    "edit": _edit,
    "scorecard": _scorecard,
    "catalogue": _catalogue,
}


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``conceptlib`` command; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        return _COMMANDS[args.command](args)
    except ConceptlibError as exc:
        print(f"conceptlib: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("conceptlib: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
