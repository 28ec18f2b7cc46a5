"""The shipped ``fashion-mnist`` model scored by its evaluator: the numbers the README and the model
card link to.

    python benchmarks/evaluate_shipped.py [--num-per-class 100] [--seed 0] [--out outputs/evaluation]
    python benchmarks/evaluate_shipped.py --precision int8 --isa AVX2 \
        --guard-against benchmarks/results/fashion-mnist-evaluation.json --json benchmarks/results/fashion-mnist-evaluation-int8-avx2.json

Runs the two documented commands, timed: ``maskgit generate`` (NUM images of every class, seed
SEED, the model's default sampler, float32) and ``maskgit evaluate --tokenizer fashion-mnist`` on
them. Then writes ``benchmarks/results/fashion-mnist-evaluation.json`` (the scores, the sampler, the
times and the targets the model is held to) and its table, through ``benchmarks/tables.py``.
``--precision`` generates in another precision, ``--isa AVX2`` with the kernels held to AVX2 (a
stand-in for a CPU without AVX-512 and native bf16), and ``--guard-against FILE`` judges the scores
against an evaluation of the same images in FILE by the sampler comparison's quality guard
(``sampler_comparison.GUARD``: accuracy at most 1 point lower, the worst class at most 3 points
lower, FID at most 1.1x) and records the verdict. ``--sampler-from FILE`` generates with the
sampler that another evaluation recorded (a previous default's) instead of the model's default, so
that two defaults can be scored on the same images. Needs
the Fashion-MNIST files (Debian's ``dataset-fashion-mnist``) and the ``eval`` extra (SSIM). About
five minutes on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/, also when loaded by path
from sampler_comparison import GUARD, TARGETS, keeps_quality  # noqa: E402
from tables import ISA_LIMITS, RESULTS, device_name, hold_to_isa, provenance, write_results  # noqa: E402

from maskgit.models.inference import PRECISIONS  # noqa: E402
from maskgit.sampling import sampler_flags, sampler_from_options  # noqa: E402

# The model's targets: those a default sampler must meet (sampler_comparison.TARGETS), and an FID
# within twice the train-vs-test floor, which it does not reach yet (see the model card).
MODEL_TARGETS = {**TARGETS, "fid_over_floor": 2.0}


def _maskgit(*args: str) -> float:
    """Run ``maskgit ARGS`` as a user would (``python -m maskgit``); return its wall time in seconds."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "maskgit", *args], check=True)
    return time.perf_counter() - start


def score_model(model: str, num_per_class: int, seed: int, out: Path, sampler: dict | None = None,
                precision: str = "fp32") -> dict:
    """Generate ``num_per_class`` images of every class of ``model`` (a registered name or a model
    folder) in ``precision`` with its default sampler (or ``sampler``, as ``Sampler.to_dict`` gives
    it), and score them with the shipped evaluator. Returns the scores, the sampler and precision
    the manifest records, both wall times and the commands."""
    samples, scores = out / "samples", out / "scores.json"
    generate = ["generate", "--model", model, "--class", "0,1,2,3,4,5,6,7,8,9", "--num", str(num_per_class),
                "--seed", str(seed), "--device", "cpu", *(sampler_flags(sampler_from_options(sampler)) if sampler else []),
                *(["--precision", precision] if precision != "fp32" else []),
                "--overwrite", "--quiet", "--out", str(samples)]
    evaluate = ["evaluate", str(samples), "--tokenizer", "fashion-mnist", "--device", "cpu", "--json", str(scores)]
    generation_seconds = _maskgit(*generate)
    evaluation_seconds = _maskgit(*evaluate)
    manifest = json.loads((samples / "manifest.json").read_text())["settings"]
    command = " && ".join("maskgit " + " ".join(part for part in step if part not in ("--overwrite", "--quiet"))
                          for step in (generate, evaluate))
    return {"command": command, "precision": manifest["precision"], "sampler": manifest["sampler"],
            "generation_seconds": generation_seconds, "evaluation_seconds": evaluation_seconds,
            "scores": json.loads(scores.read_text())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--num-per-class", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("outputs/evaluation"), help="where the samples and scores go")
    parser.add_argument("--json", type=Path, default=RESULTS / "fashion-mnist-evaluation.json")
    parser.add_argument("--precision", default="fp32", choices=tuple(PRECISIONS))
    parser.add_argument("--isa", default="native", choices=tuple(ISA_LIMITS),
                        help="generate with every library's kernels held to these instruction sets")
    parser.add_argument("--guard-against", type=Path, default=None, metavar="FILE",
                        help="an evaluation results file of the same images to judge these scores against")
    parser.add_argument("--sampler-from", type=Path, default=None, metavar="FILE",
                        help="generate with the sampler an evaluation results file records (a previous default's, "
                        "say) instead of the model's default sampler")
    args = parser.parse_args()
    if not 1 <= args.num_per_class <= 1000:
        parser.error(f"--num-per-class must be in [1, 1000], got {args.num_per_class}")
    try:
        reference = json.loads(args.guard_against.read_text()) if args.guard_against else None
    except (OSError, ValueError) as error:
        parser.error(f"--guard-against {args.guard_against}: {error}")
    try:
        sampler = json.loads(args.sampler_from.read_text())["sampler"] if args.sampler_from else None
        if sampler is not None:
            sampler_from_options(sampler)
    except (OSError, ValueError, KeyError, TypeError) as error:
        parser.error(f"--sampler-from {args.sampler_from}: no sampler an evaluation recorded ({error})")
    if reference and (reference.get("kind"), reference.get("num_per_class"), reference.get("seed")) != (
            "fashion-mnist-evaluation", args.num_per_class, args.seed):
        parser.error(f"--guard-against {args.guard_against}: not an evaluation of {args.num_per_class} images a class "
                     f"with seed {args.seed}")
    isa = hold_to_isa(args.isa)

    run = score_model("fashion-mnist", args.num_per_class, args.seed, args.out, sampler, precision=args.precision)
    data = {
        "kind": "fashion-mnist-evaluation",
        "provenance": provenance(device_name("cpu", torch.get_num_threads()), command=run.pop("command")),
        "model": "fashion-mnist",
        "num_per_class": args.num_per_class,
        "seed": args.seed,
        "targets": MODEL_TARGETS,
        **run,
    }
    if isa["environment"]:
        data["isa"] = isa
    if reference:
        data["guard"] = guard_verdict(data["scores"], reference, str(args.guard_against))
    print(f"wrote {args.json} and {write_results(args.json, data)}")


def _guarded(scores: dict) -> dict:
    """The three figures the guard reads, from an evaluation's scores."""
    return {"accuracy": scores["accuracy"], "fid": scores["fid"],
            "worst_class_accuracy": min(entry["accuracy"] for entry in scores["per_class"])}


def guard_verdict(scores: dict, reference: dict, source: str) -> dict:
    """Whether ``scores`` keep ``GUARD`` against the evaluation ``reference`` (a results file's
    data, of the same images): both sides' figures, the limits and the verdict."""
    ours, theirs = _guarded(scores), _guarded(reference["scores"])
    return {"against": source, "against_precision": reference["precision"], "limits": GUARD, "ours": ours,
            "reference": theirs, "kept": keeps_quality(ours, theirs)}


if __name__ == "__main__":
    main()
