"""The shipped model reproduced by one command, and scored like the shipped one.

    python benchmarks/reproduce_fashion_mnist.py [--run runs/fashion-mnist] [--set STAGE.KEY=VALUE ...]
        [--num-per-class 100] [--seed 0] [--earlier-seconds STAGE=SECONDS ...] [--note TEXT]

1. Runs ``maskgit train fashion-mnist --out RUN`` with any ``--set`` overrides (with ``--resume``
   when RUN exists: a run stopped part-way goes on where it was), unless RUN already holds a
   finished run's ``report.json``.
2. Scores ``RUN/pipeline`` exactly as ``benchmarks/evaluate_shipped.py`` scored the shipped model:
   ``--num-per-class`` images of every class, seed ``--seed``, float32, the shipped evaluator, and
   the sampler the shipped model was scored with (its default), so that only the weights differ.
3. Compares with the shipped model's scores in ``benchmarks/results/fashion-mnist-evaluation.json``
   (same protocol; run ``evaluate_shipped.py`` first on the same code) against the targets: accuracy
   within 2 points of the shipped model's and an FID at most 1.2x its FID.

Writes ``benchmarks/results/fashion-mnist-reproduction.json`` and its table (``benchmarks/tables.py``):
the command, the CPU, each stage's wall time from the run's report, both models' scores and whether
the targets are met. ``--earlier-seconds transformer=1482`` adds the time a stage ran in a process
that was killed before the one that finished it (a resumed stage's report counts only its own
process); the table says which stages were resumed.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/, also when loaded by path
from evaluate_shipped import score_model  # noqa: E402
from tables import RESULTS, device_name, provenance, write_results  # noqa: E402

TARGETS = {"accuracy_within": 0.02, "fid_ratio": 1.2}
COMMAND = "maskgit train fashion-mnist --out {run}"


def _earlier(values: list[str]) -> dict[str, float]:
    """``STAGE=SECONDS`` pairs; ValueError naming the pair that is not one."""
    earlier = {}
    for value in values:
        stage, _, seconds = value.partition("=")
        try:
            earlier[stage] = float(seconds)
        except ValueError:
            raise ValueError(f"--earlier-seconds {value!r}: expected STAGE=SECONDS") from None
        if not stage or not 0 <= earlier[stage] < 1e7:
            raise ValueError(f"--earlier-seconds {value!r}: expected STAGE=SECONDS")
    return earlier


def compare(reproduced: dict, shipped: dict, targets: dict = TARGETS) -> dict:
    """Whether the reproduced model's scores meet the targets against the shipped model's (both the
    ``scores`` of ``maskgit evaluate --json``)."""
    accuracy_gap = shipped["accuracy"] - reproduced["accuracy"]
    fid_ratio = reproduced["fid"] / shipped["fid"]
    return {"accuracy_gap": accuracy_gap, "fid_ratio": fid_ratio,
            "accuracy_met": accuracy_gap <= targets["accuracy_within"] + 1e-12,
            "fid_met": fid_ratio <= targets["fid_ratio"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, default=Path("runs/fashion-mnist"))
    parser.add_argument("--num-per-class", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--shipped", type=Path, default=RESULTS / "fashion-mnist-evaluation.json",
                        help="the shipped model's scores (benchmarks/evaluate_shipped.py)")
    parser.add_argument("--earlier-seconds", nargs="*", default=[], metavar="STAGE=SECONDS",
                        help="time a stage ran in an earlier, killed process")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="STAGE.KEY=VALUE",
                        help="an override of the recipe, passed to maskgit train and recorded in the command")
    parser.add_argument("--note", default=None, help="how the run was made, where the command alone does not say")
    parser.add_argument("--json", type=Path, default=RESULTS / "fashion-mnist-reproduction.json")
    args = parser.parse_args()
    shipped = json.loads(args.shipped.read_text())
    if (shipped["num_per_class"], shipped["seed"]) != (args.num_per_class, args.seed):
        parser.error(f"{args.shipped} scored {shipped['num_per_class']} a class with seed {shipped['seed']}: "
                     "score the reproduction the same way")
    try:
        earlier = _earlier(args.earlier_seconds)
    except ValueError as error:
        parser.error(str(error))

    command = COMMAND.format(run=args.run) + "".join(f" --set {override}" for override in args.overrides)
    report_file = args.run / "report.json"
    if not report_file.is_file():
        train = [sys.executable, "-m", "maskgit", *command.split()[1:], *(["--resume"] if args.run.exists() else [])]
        start = time.perf_counter()
        subprocess.run(train, check=True)
        print(f"trained in {time.perf_counter() - start:.0f} s")
    report = json.loads(report_file.read_text())
    unknown = sorted(set(earlier) - set(report["stage_seconds"]))
    if unknown:
        parser.error(f"--earlier-seconds: {', '.join(unknown)} is not a stage of {args.run} "
                     f"({', '.join(report['stage_seconds'])})")
    recipe = json.loads((args.run / "recipe.json").read_text())

    scored = score_model(str(args.run / "pipeline"), args.num_per_class, args.seed, args.run.parent / "reproduction-evaluation",
                         sampler=shipped["sampler"])
    stage_seconds = {name: seconds + earlier.get(name, 0.0) for name, seconds in report["stage_seconds"].items()}
    resumed = sorted({name for name, result in report["stages"].items() if result.get("resumed")} | set(earlier))
    data = {
        "kind": "fashion-mnist-reproduction",
        "provenance": provenance(device_name("cpu", recipe["recipe"]["threads"] or None),
                                 command=f"{command} && python benchmarks/reproduce_fashion_mnist.py",
                                 note=args.note),
        "num_per_class": args.num_per_class,
        "seed": args.seed,
        "precision": recipe["recipe"]["transformer"]["precision"],
        "stage_seconds": stage_seconds,
        "total_seconds": sum(stage_seconds.values()),
        "resumed_stages": resumed,
        "tokenizer": report["tokenizer"],
        "transformer": report["transformer"],
        "sampler": scored["sampler"],
        "scores": scored["scores"],
        "shipped": {"code_version": shipped["provenance"]["code_version"], "scores": shipped["scores"]},
        "targets": TARGETS,
        **compare(scored["scores"], shipped["scores"]),
    }
    data["met"] = data["accuracy_met"] and data["fid_met"]
    print(f"wrote {args.json} and {write_results(args.json, data)}")


if __name__ == "__main__":
    main()
