"""Every sampler, guidance scale, guidance schedule and step count on one model, scored by the
shipped Fashion-MNIST evaluator; picks the model's default sampler.

    python benchmarks/sampler_comparison.py [--model fashion-mnist] [--num-per-class 50]
        [--json benchmarks/results/sampler-comparison.json] [--plot docs/sampler-comparison.png]
        [--context-reuse 0 1 2 3]

The JSON's table (``sampler-comparison.md`` beside it) is written by ``benchmarks/tables.py``.

For every setting it generates ``--num-per-class`` images of each class with the same seed, times
the generation alone (images/s, on ``--threads`` CPU threads) and scores the images: accuracy against
the requested class (overall and the worst class), FID in the classifier's feature space against the
test set (beside the train-vs-test floor on as many images) and diversity within each class relative
to real images. Guidance 0 has no schedule, so it runs once per sampler and step count. With
``--context-reuse N ...`` every setting also runs with each ``Sampler.context_reuse`` listed (0 is
the setting as it is without the flag, so its rows are shared with a sweep made without it), and
``--reuse-group`` adds each confidence setting with context reuse under ReCAP's grouped rule.

The JSON is rewritten after every setting, and a rerun with the same options on the same weights
(the JSON records a digest of them) skips the settings it already holds, so an interrupted sweep
resumes; changed weights at the same path start afresh. ``--save-default`` writes the best sampler into the model folder's
``model_index.json``, where ``maskgit generate`` and ``MaskGIT.from_pretrained`` find it. ``--temperatures`` adds a second pass over the choice and softmax
temperatures of the best setting within the speed limits below (in each precision, and without the
guard, which the temperatures may satisfy). The best setting is the one with the lowest FID among those that
meet the targets (accuracy >= 90 %, no class below 70 %, diversity >= 80 %), or the lowest FID when
none does; among settings whose FID is within ``--fid-tolerance`` of it, the fastest wins. With
``--confirm N`` the N best settings (of each precision) are scored again on ``--confirm-per-class``
images of each class, and the same rule picks among them. ``--max-passes N`` is a speed budget for the default: only
settings that cost at most N transformer passes an image (one a step, two with guidance) can win.
``--precisions fp32 int8 ...`` makes the precision an axis of the sweep: every setting runs in each
(its ``precision`` field), timed and scored like the rest. Only settings in ``--precision`` (fp32 unless
given), the one a pipeline runs in unless asked, can become the default, since the default records
a sampler and not a precision; the finalists of the others say whether they keep the current
default's quality. Without it every setting runs in ``--precision`` and has no such field. ``--isa AVX2`` runs it with every
library's kernels held to AVX2 (``tables.ISA_LIMITS``), a stand-in for a CPU without AVX-512 and
native bf16, where int8 runs on 7-bit activations; the JSON records the limit.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import itertools
import json
import sys
import time
from pathlib import Path
from typing import Any, NamedTuple

import torch

from maskgit import CheckpointError, MaskGIT
from maskgit.checkpoints.pipeline_folder import PIPELINE_INDEX, read_index, write_index
from maskgit.evaluation.evaluate import GenerationEvaluator
from maskgit.models.inference import PRECISIONS
from maskgit.runs import Run, RunPlan
from maskgit.sampling import MAX_CONTEXT_REUSE, sampler_from_options

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/tables.py, also when loaded by path
from tables import (  # noqa: E402
    ISA_LIMITS,
    device_name,
    hold_to_isa,
    provenance,
    sampler_label,
    sampler_temperatures,
    setting_axes,
    write_results,
)

SAMPLERS = ("confidence", "halton", "random")
GUIDANCE = (0.0, 1.0, 2.0, 4.0)
SCHEDULES = ("constant", "linear", "cosine")
STEPS = (4, 8, 12, 16, 32)
TARGETS = {"accuracy": 0.90, "worst_class_accuracy": 0.70, "diversity": 0.80}


#: Fields of a setting that are not the sampler's: the axes of the sweep besides the sampler.
AXES = ("precision",)


def settings(samplers, guidance, schedules, steps, context_reuse=(0,), precisions=None,
             reuse_groups=False) -> list[dict[str, Any]]:
    """Sampler fields of every setting of the sweep (guidance 0 once, without a schedule), each with
    every ``context_reuse`` listed (0, the official decoding, is left out of the fields), with
    ``reuse_groups`` each confidence setting with context reuse also under ReCAP's grouped rule
    (``ConfidenceSampler.reuse_group``), and each in every one of ``precisions`` (a ``precision``
    field) when given."""
    out = []
    for name, scale in itertools.product(samplers, guidance):
        for schedule, count, reuse in itertools.product(("constant",) if scale == 0 else schedules, steps, context_reuse):
            setting = {"sampler": name, "num_steps": count, "guidance": scale, "guidance_schedule": schedule,
                       **({"context_reuse": reuse} if reuse else {})}
            grouped = (False, True) if reuse_groups and reuse and name == "confidence" else (False,)
            for group, precision in itertools.product(grouped, precisions or (None,)):
                out.append({**setting, **({"reuse_group": True} if group else {}),
                            **({"precision": precision} if precision else {})})
    return out


def setting_sampler(setting: dict[str, Any]):
    """The sampler a setting (its ``sampler`` name and that sampler's fields) builds."""
    return sampler_from_options({name: value for name, value in setting.items() if name not in AXES})


def key(setting: dict[str, Any]) -> str:
    """The sampler a setting builds and its other axes, as text: settings that build the same
    sampler and run it the same way share it."""
    axes = {name: setting[name] for name in AXES if name in setting}
    sampler = setting_sampler(setting).to_dict()
    return json.dumps([sampler, axes] if axes else sampler, sort_keys=True)


def meets_targets(row: dict[str, Any]) -> bool:
    return all(row[name] >= bound for name, bound in TARGETS.items())


def transformer_passes(setting: dict[str, Any]) -> int:
    """Transformer passes one image costs under ``setting`` (``Sampler.transformer_passes``)."""
    return setting_sampler(setting).transformer_passes()


# The quality a faster default must keep against the current one, scored on the same images:
# accuracy at most 1 point lower, the worst class at most 3 points lower, FID at most 1.1x.
GUARD = {"accuracy": 0.01, "worst_class_accuracy": 0.03, "fid_ratio": 1.1}


class Rule(NamedTuple):
    """Which settings may become the default, beyond the targets.

    ``max_passes``: at most this many transformer passes an image (a budget that holds on any
    machine). ``reference``: the ``key`` of the current default's setting; with ``min_speedup`` a
    setting must generate at least that many times as many images a second as the reference did
    in the same run (a time budget relative to a baseline timed beside it), and with ``guard`` it
    must keep ``GUARD`` against the reference's scores on the same images. ``precision``: only
    settings in this precision, the one a pipeline runs in unless asked (a default records a
    sampler, not a precision; settings without the field run in it).
    """

    max_passes: int | None = None
    reference: str | None = None
    min_speedup: float | None = None
    guard: bool = False
    precision: str | None = None

    def reference_row(self, rows: list[dict[str, Any]]) -> dict[str, Any] | None:
        """The current default's row among ``rows`` (None without a reference). ValueError when the
        rule needs it and it is not there."""
        if self.reference is None:
            return None
        row = next((row for row in rows if key(row["setting"]) == self.reference), None)
        if row is None and (self.min_speedup or self.guard):
            raise ValueError("the reference setting (the current default) has no row among these")
        return row

    def eligible(self, row: dict[str, Any], reference: dict[str, Any] | None) -> bool:
        """Whether ``row`` may win, given the reference's row (``reference_row``)."""
        if self.max_passes is not None and transformer_passes(row["setting"]) > self.max_passes:
            return False
        if self.precision is not None and row["setting"].get("precision", self.precision) != self.precision:
            return False
        if reference is None:
            return True
        if self.min_speedup and row["images_per_second"] < self.min_speedup * reference["images_per_second"]:
            return False
        return not self.guard or keeps_quality(row, reference)


ANY = Rule()  # every setting may win


def keeps_quality(row: dict[str, Any], reference: dict[str, Any]) -> bool:
    """Whether ``row`` keeps ``GUARD`` against ``reference`` (both scored on the same images)."""
    return (row["accuracy"] >= reference["accuracy"] - GUARD["accuracy"] - 1e-12
            and row["worst_class_accuracy"] >= reference["worst_class_accuracy"] - GUARD["worst_class_accuracy"] - 1e-12
            and row["fid"] <= reference["fid"] * GUARD["fid_ratio"])


def ranked(rows: list[dict[str, Any]], rule: Rule = ANY) -> list[dict[str, Any]]:
    """Rows meeting the targets (all rows if none does), lowest FID first, among the rows the
    ``rule`` allows (the current default, or every row, if it allows none)."""
    # Nothing allowed: the current default where there is one (nothing faster keeps its quality).
    reference = rule.reference_row(rows)
    eligible = [row for row in rows if rule.eligible(row, reference)] or ([reference] if reference else rows)
    pool = [row for row in eligible if meets_targets(row)] or eligible
    return sorted(pool, key=lambda row: row["fid"])


def pick_best(rows: list[dict[str, Any]], fid_tolerance: float, rule: Rule = ANY) -> dict[str, Any]:
    """The lowest-FID row among those meeting the targets (all rows if none does); then the
    fastest of the rows within ``fid_tolerance`` (relative) of that FID, among the same pool.
    ``rule``: as in ``ranked``."""
    pool = ranked(rows, rule)
    close = [row for row in pool if row["fid"] <= pool[0]["fid"] * (1 + fid_tolerance)]
    return max(close, key=lambda row: row["images_per_second"])


def temperature_settings(setting: dict[str, Any]) -> list[dict[str, Any]]:
    """``setting`` with each softmax temperature and, for the confidence sampler, each choice
    temperature of the refining pass (``--temperatures``)."""
    choices = (1.0, 2.0, 3.0, 4.5, 8.0) if setting["sampler"] == "confidence" else (None,)
    out = []
    for softmax, choice in itertools.product((0.8, 1.0, 1.2), choices):
        refined = dict(setting, softmax_temperature=softmax)
        refined.pop("choice_temperature", None)
        if choice is not None:
            refined["choice_temperature"] = choice
        out.append(refined)
    return out


def run_setting(pipe: MaskGIT, evaluator: GenerationEvaluator, setting: dict[str, Any], plan: RunPlan,
                seed: int, batch_size: int) -> dict[str, Any]:
    sampler = setting_sampler(setting)
    start = time.perf_counter()
    images = torch.cat([batch for _, batch in Run(plan, sampler, seed).images(pipe, batch_size=batch_size)])
    seconds = time.perf_counter() - start
    labels = torch.tensor(plan.labels)
    scores = evaluator(images, labels)
    per_class = {entry["name"]: entry["accuracy"] for entry in scores["per_class"]}
    return {
        "setting": setting,
        "sampler": sampler.to_dict(),
        "accuracy": scores["accuracy"],
        "worst_class_accuracy": min(per_class.values()),
        "worst_class": min(per_class, key=per_class.get),
        "fid": scores["fid"],
        "fid_floor": scores["fid_floor"],
        "diversity": scores["diversity"],
        "images_per_second": len(labels) / seconds,
        "seconds": seconds,
        "images": len(labels),
        "passes": transformer_passes(setting),
        "per_class_accuracy": per_class,
    }


def weights_digest(pipe: MaskGIT) -> str:
    """SHA-256 of the pipeline's tokenizer and transformer tensors (names, dtypes, shapes, values):
    which weights a sweep ran on, so that a resumed sweep and the shipped model can be checked
    against it."""
    digest = hashlib.sha256()
    for part in (pipe.tokenizer, pipe.transformer):
        for name, tensor in sorted(part.state_dict().items()):
            digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
            digest.update(tensor.detach().cpu().reshape(-1).contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def plot(rows: list[dict[str, Any]], path: Path, title: str) -> None:
    """Accuracy, FID and diversity against steps: one column per sampler, one line per guidance
    scale (colour), schedule (dash) and context reuse (marker)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = (("accuracy", "accuracy (%)", 100), ("fid", "classifier FID", 1), ("diversity", "diversity (%)", 100))
    samplers = [name for name in SAMPLERS if any(r["setting"]["sampler"] == name for r in rows)]
    figure, axes = plt.subplots(len(metrics), len(samplers), figsize=(4.2 * len(samplers), 9), sharex=True,
                                sharey="row", squeeze=False)
    colours = {0.0: "black", 1.0: "tab:blue", 2.0: "tab:orange", 4.0: "tab:red"}
    dashes = {"constant": "-", "linear": "--", "cosine": ":"}
    markers = ["o", "s", "^", "D", "v"]
    sweep = [r for r in rows if not sampler_temperatures(r["setting"])]
    for column, name in enumerate(samplers):
        groups: dict[tuple[float, str, int, str], list[dict[str, Any]]] = {}
        for row in sweep:
            s = row["setting"]
            if s["sampler"] == name:
                groups.setdefault((s["guidance"], s["guidance_schedule"], s.get("context_reuse", 0),
                                   setting_axes(s) + (", groups" if s.get("reuse_group") else "")), []).append(row)
        for (scale, schedule, reuse, other), group in sorted(groups.items()):
            group.sort(key=lambda r: r["setting"]["num_steps"])
            steps = [r["setting"]["num_steps"] for r in group]
            label = f"guidance {scale:g}" + (f" {schedule}" if scale else "") + (f", reuse {reuse}" if reuse else "")
            for line, (metric, _, factor) in enumerate(metrics):
                axes[line][column].plot(
                    steps, [factor * r[metric] for r in group], dashes[schedule], color=colours.get(scale, "grey"),
                    marker=markers[min(reuse, len(markers) - 1)], markersize=3, label=label + other,
                )
        axes[0][column].set_title(f"{name} sampler")
        axes[-1][column].set_xlabel("steps")
        axes[-1][column].set_xscale("log", base=2)
        axes[-1][column].set_xticks([4, 8, 12, 16, 32], ["4", "8", "12", "16", "32"])
    for line, (_, text, _) in enumerate(metrics):
        axes[line][0].set_ylabel(text)
    floor = rows[0]["fid_floor"]
    for column in range(len(samplers)):
        axes[1][column].axhline(floor, color="green", linewidth=0.8)
        axes[1][column].axhline(2 * floor, color="green", linewidth=0.8, linestyle="--")
        axes[0][column].axhline(100 * TARGETS["accuracy"], color="green", linewidth=0.8, linestyle="--")
        axes[2][column].axhline(100 * TARGETS["diversity"], color="green", linewidth=0.8, linestyle="--")
        axes[1][column].set_yscale("log")
    axes[0][-1].legend(fontsize=7, loc="lower right")
    figure.suptitle(title + "  (green: FID floor and 2x floor, accuracy and diversity targets)", fontsize=10)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)


def save_default(folder: str | Path, sampler: dict[str, Any]) -> Path:
    """Record ``sampler`` (as ``Sampler.to_dict`` gives it) as the default sampler of the pipeline
    folder ``folder``; returns the path of the index written. SystemExit unless it is one."""
    try:
        index = read_index(folder)
    except CheckpointError as error:
        raise SystemExit(f"--save-default: {error} (--model must be a pipeline folder)") from None
    write_index(folder, dataclasses.replace(index, sampler=sampler_from_options(sampler)))
    return Path(folder) / PIPELINE_INDEX


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="fashion-mnist")
    parser.add_argument("--num-per-class", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=250)
    parser.add_argument("--precision", default="fp32", choices=tuple(PRECISIONS),
                        help="the precision the pipeline runs in unless asked: the settings run in it, or with "
                        "--precisions only its settings can become the default (which records a sampler, not a "
                        "precision)")
    parser.add_argument("--precisions", nargs="+", default=None, choices=tuple(PRECISIONS),
                        help="sweep these precisions as an axis (every setting in each); --precision must be one")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--isa", default="native", choices=tuple(ISA_LIMITS),
                        help="run as if this CPU had only these instruction sets: AVX2 stands in for a CPU without "
                             "AVX-512 and native bf16 (int8 then runs on 7-bit activations)")
    parser.add_argument("--samplers", nargs="+", default=SAMPLERS, choices=SAMPLERS)
    parser.add_argument("--guidance", nargs="+", type=float, default=GUIDANCE)
    parser.add_argument("--schedules", nargs="+", default=SCHEDULES, choices=SCHEDULES)
    parser.add_argument("--steps", nargs="+", type=int, default=STEPS)
    parser.add_argument("--context-reuse", nargs="+", type=int, default=[0], metavar="N",
                        help="run every setting with each of these Sampler.context_reuse values (default: 0 only, "
                        "the official decoding)")
    parser.add_argument("--reuse-group", action="store_true",
                        help="also run every confidence setting with context reuse under ReCAP's grouped rule "
                        "(ConfidenceSampler.reuse_group: the full evaluation picks what its cheap steps fix)")
    parser.add_argument("--temperatures", action="store_true",
                        help="then sweep the choice / softmax temperatures of each precision's best setting within the "
                        "speed limits (--max-passes, --min-speedup; not the guard)")
    parser.add_argument("--fid-tolerance", type=float, default=0.05)
    parser.add_argument("--confirm", type=int, default=0,
                        help="re-score the N best settings of each precision with --confirm-per-class images and pick among them")
    parser.add_argument("--confirm-per-class", type=int, default=100)
    parser.add_argument("--max-passes", type=int, default=None,
                        help="only settings costing at most N transformer passes an image (a step; two with guidance) "
                        "can become the default: a speed budget that holds on any machine (all are still measured)")
    parser.add_argument("--min-speedup", type=float, default=None,
                        help="only settings at least this many times as fast as the model's current default, timed in "
                        "the same run, can become the default (the default is added to the sweep)")
    parser.add_argument("--guard", action="store_true",
                        help="only settings that keep the current default's quality (accuracy at most 1 point lower, "
                        "worst class at most 3 points, FID at most 1.1x; on the same images) can become the default")
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/sampler-comparison.json"))
    parser.add_argument("--plot", type=Path, default=None)
    parser.add_argument("--save-default", action="store_true",
                        help="record the best sampler as the default in --model's model_index.json (a folder)")
    args = parser.parse_args()
    isa = hold_to_isa(args.isa)
    if not all(0 <= reuse <= MAX_CONTEXT_REUSE for reuse in args.context_reuse):
        parser.error(f"--context-reuse values must be from 0 to {MAX_CONTEXT_REUSE}, got {args.context_reuse}")
    torch.set_num_threads(args.threads)

    if args.precisions and args.precision not in args.precisions:
        parser.error(f"--precision {args.precision} must be one of --precisions {' '.join(args.precisions)}")
    if args.min_speedup is not None and not 0 < args.min_speedup <= 100:
        parser.error(f"--min-speedup must be in (0, 100], got {args.min_speedup}")
    pipe = MaskGIT.from_pretrained(args.model)
    digest = weights_digest(pipe)  # of the stored float32 weights, before any cast
    current = pipe.sampler.to_dict()  # the model's default now: the reference of --min-speedup and --guard
    if args.precisions:
        current["precision"] = args.precision
    relative = args.min_speedup is not None or args.guard
    rule = Rule(args.max_passes, key(current) if relative else None, args.min_speedup, args.guard,
                args.precision if args.precisions else None)
    pipes = {}  # precision -> the pipeline in it
    for precision in args.precisions or [args.precision]:
        pipes[precision] = MaskGIT.from_pretrained(args.model, precision=precision)
        pipes[precision].set_progress_bar_config(disable=True)
    evaluator = GenerationEvaluator()
    classes = tuple(range(len(pipe.class_names)))
    plan = RunPlan(classes, args.num_per_class)
    config = {"model": args.model, "num_per_class": args.num_per_class, "seed": args.seed,
              "precision": args.precision, "threads": args.threads, "batch_size": args.batch_size,
              "weights_sha256": digest}
    if args.precisions:
        config["precisions"] = args.precisions
    if isa["environment"]:  # a run on all of the CPU's instruction sets keeps the config of earlier files
        config["isa"] = isa
    del pipe
    data: dict[str, Any] = {"kind": "sampler-comparison", "config": config, "targets": TARGETS, "rows": []}
    if args.json.is_file():
        previous = json.loads(args.json.read_text())
        if previous.get("config") == config:
            data = previous
    data["provenance"] = provenance(device_name("cpu", args.threads))  # of this run, resumed or not
    started, spent_before = time.perf_counter(), data.get("wall_seconds", 0.0)  # a resumed sweep adds its time
    done = {key(row["setting"]) for row in data["rows"]}

    def run_all(todo: list[dict[str, Any]]) -> None:
        for setting in todo:
            if key(setting) in done:
                continue
            row = run_setting(pipes[setting.get("precision", args.precision)], evaluator, setting, plan, args.seed,
                              args.batch_size)
            data["rows"].append(row)
            data["wall_seconds"] = spent_before + time.perf_counter() - started
            done.add(key(setting))
            write_results(args.json, data)
            print(f"{sampler_label(setting):60s} acc {100 * row['accuracy']:5.1f} % worst {100 * row['worst_class_accuracy']:3.0f} % "
                  f"FID {row['fid']:6.2f} (floor {row['fid_floor']:.2f}) div {100 * row['diversity']:3.0f} % "
                  f"{row['images_per_second']:6.1f} img/s", flush=True)

    run_all(settings(args.samplers, args.guidance, args.schedules, args.steps, args.context_reuse, args.precisions,
                     args.reuse_group)
            + ([current] if relative else []))
    if args.temperatures:
        # The best setting of each precision within the speed limits, without the guard: what the
        # guard would refuse may be what other temperatures mend.
        for precision in args.precisions or [None]:
            best = pick_best(data["rows"], args.fid_tolerance, rule._replace(guard=False, precision=precision))
            run_all(temperature_settings(best["setting"]))

    best = pick_best(data["rows"], args.fid_tolerance, rule)
    if args.confirm:
        # The sweep's small sets rank the settings; the finalists are scored again on more images.
        # In each precision, so that the finalists tell which int8 settings keep the quality too.
        confirm_plan = RunPlan(classes, args.confirm_per_class)
        leaders = [row["setting"] for precision in args.precisions or [None]
                   for row in ranked(data["rows"], rule._replace(precision=precision))[: args.confirm]]
        finalists = []
        for setting in (*leaders, best["setting"], *([current] if relative else [])):  # the reference, on the same images
            if key(setting) not in {key(finalist) for finalist in finalists}:
                finalists.append(setting)
        confirmed = {key(row["setting"]): row for row in data.get("confirmed", [])
                     if row["images"] == len(confirm_plan.labels)}  # not those of another --confirm-per-class
        for setting in finalists:
            if key(setting) not in confirmed:
                confirmed[key(setting)] = run_setting(pipes[setting.get("precision", args.precision)], evaluator, setting,
                                                      confirm_plan, args.seed, args.batch_size)
                print(f"confirm: {sampler_label(setting):51s} acc {100 * confirmed[key(setting)]['accuracy']:5.1f} % "
                      f"FID {confirmed[key(setting)]['fid']:6.2f}", flush=True)
                data["confirmed"] = list(confirmed.values())  # kept, so that an interrupted run resumes
                data["wall_seconds"] = spent_before + time.perf_counter() - started
                write_results(args.json, data)
        data["confirmed"] = [confirmed[key(setting)] for setting in finalists]
        if args.guard:
            reference = rule.reference_row(data["confirmed"])
            for row in data["confirmed"]:
                row["keeps_quality"] = keeps_quality(row, reference)
        best = pick_best(data["confirmed"], args.fid_tolerance, rule)  # written below, with the best
    data["best"] = best
    data["max_passes"] = args.max_passes
    if relative:
        data["reference"] = {"setting": current, "min_speedup": args.min_speedup, "guard": GUARD if args.guard else None}
    data["wall_seconds"] = spent_before + time.perf_counter() - started
    write_results(args.json, data)
    print(f"\nbest: {sampler_label(best['setting'])}  sampler {json.dumps(best['sampler'])}")
    if args.save_default:
        print(f"recorded it in {save_default(args.model, best['sampler'])}")
    if args.plot:
        plot(data["rows"], args.plot, f"{args.model}: {args.num_per_class} images per class, seed {args.seed}")


if __name__ == "__main__":
    main()
