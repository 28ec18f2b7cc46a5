"""``maskgit models`` and ``maskgit classes``: what can be loaded by name, and a model's classes."""

from __future__ import annotations

import argparse
import json


def register(subparsers: argparse._SubParsersAction) -> None:
    from maskgit.registry import DEFAULT_MODEL

    models = subparsers.add_parser(
        "models",
        help="list the models that load by name",
        description="List the models that --model accepts by name: those shipped in the package and the "
        "registered official checkpoints (downloaded on first use), with where each comes from.",
    )
    models.add_argument("--json", action="store_true", help="print a JSON list instead of text")
    models.set_defaults(run=run_models)

    classes = subparsers.add_parser(
        "classes",
        help="list a model's class ids and names",
        description="List the class ids and names of a model; --class takes either.",
    )
    classes.add_argument(
        "--model", default=DEFAULT_MODEL,
        help=f"a model name (see 'maskgit models') or a saved pipeline folder (default: {DEFAULT_MODEL})",
    )
    classes.add_argument("--json", action="store_true", help="print a JSON list of names, index = class id")
    classes.set_defaults(run=run_classes)


def run_models(args: argparse.Namespace) -> int:
    from maskgit.registry import list_models, model_info

    infos = [model_info(name) for name in list_models()]
    if args.json:
        print(json.dumps([
            {"name": i.name, "source": i.source, "description": i.description, "location": str(i.location),
             "urls": list(i.urls), "cached": i.cached}
            for i in infos
        ], indent=2))
        return 0
    width = max(len(info.name) for info in infos)
    for info in infos:
        print(f"{info.name:<{width}}  {info.source:<10}  {info.description}")
        if info.source == "shipped":
            where = f"in the package: {info.location}"
        else:
            state = "converted" if info.cached else "downloaded on first use"
            where = f"{state}: {info.location} (from {', '.join(info.urls)})"
        print(f"{'':<{width}}  {'':<10}  {where}")
    return 0


def run_classes(args: argparse.Namespace) -> int:
    from maskgit.registry import model_class_names

    names = model_class_names(args.model)
    if args.json:
        print(json.dumps(list(names), indent=2))
        return 0
    width = len(str(len(names) - 1))
    for class_id, name in enumerate(names):
        print(f"{class_id:>{width}}  {name}")
    return 0
