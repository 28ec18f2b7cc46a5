"""A ``maskgit train`` run: from a folder of images (or a built-in dataset) to an exported pipeline,
in resumable stages.

``plan_run`` surveys the data (``maskgit.data.survey``: bad data is one clear error before anything
is written), chooses the recipe (``maskgit.training.recipe``), measures a few steps of every stage
(so a ``--budget`` becomes fixed step counts and the plan says how long each stage takes) and
saves ``RUN/recipe.json``. ``execute_run`` runs the stages in order, each in its own folder of RUN
with its own checkpoints:

- ``init`` (with ``--init``): the starting models in ``RUN/init`` (the tokenizer as it is, the
  transformer with a new class table);
- ``tokenizer``: a VQGAN trained from scratch, ``RUN/tokenizer``;
- ``decoder``: its decoder (or the ``--init`` tokenizer's) fine-tuned alone, ``RUN/decoder``;
- ``tokens``: the training and held-out images encoded once, ``RUN/tokens``;
- ``transformer``: the masked transformer on those tokens, ``RUN/transformer``;
- ``finish``: ``RUN/pipeline`` (with the recipe's default sampler and the class names),
  ``RUN/samples.png`` (a labelled grid of every class) and ``RUN/report.json`` (the tokenizer's
  PSNR and SSIM on held-out images, the transformer's masked-token accuracy on held-out tokens,
  every stage's wall time).

A finished stage is recorded in ``RUN/stages.json`` and skipped by a resumed run; the stage that
was running continues from its newest checkpoint. Every stage is a function of the recipe and the
data, so a run killed anywhere and resumed ends with the same weights as one never stopped.
Under ``torchrun`` every process runs the same plan and stages (the trainers split the batches);
the main process alone writes files, extracts tokens and finishes.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset, TensorDataset

from maskgit.data.survey import BUILTIN_DATASETS, DataSurvey, RunDatasets, survey_data
from maskgit.devices import cpu_has_native_bf16, describe_device
from maskgit.distributed import Distributed, setup_distributed
from maskgit.io import atomic_write_text, check_output_dir, file_lock, remove_temp_files
from maskgit.training import recipe as rules
from maskgit.training.checkpoint import CHECKPOINT_PATTERN
from maskgit.training.progress import RunDisplay
from maskgit.training.recipe import DataFacts, Recipe, StepTimes

__all__ = ["TrainRequest", "RunPlan", "RunError", "plan_run", "execute_run", "calibrate", "describe_plan",
           "RECIPE_FILE", "REPORT_FILE", "SAMPLES_FILE", "STAGES_FILE", "MAX_IMAGE_SIZE",
           "MAX_CLASSES_SHOWN"]

RECIPE_FILE, STAGES_FILE, REPORT_FILE, SAMPLES_FILE = "recipe.json", "stages.json", "report.json", "samples.png"
_FORMAT, _VERSION = "maskgit-train-run", 1
#: The largest ``--image-size``; the automatic choice stops at 256.
MAX_IMAGE_SIZE, _AUTO_MAX_IMAGE_SIZE, _MIN_IMAGE_SIZE = 1024, 256, 16
#: ``samples.png`` shows at most this many classes (the first ones).
MAX_CLASSES_SHOWN = 100
_CALIBRATION_STEPS = 2


class RunError(ValueError):
    """The run cannot start or continue as asked (the message says why and what to do)."""


@dataclass(frozen=True)
class TrainRequest:
    """What the user asked for; a resumed run must ask for the same (``differences``).

    ``budget`` is in seconds; ``overrides`` are ``--set KEY=VALUE`` texts, in order."""

    data: str
    image_size: int | None = None
    budget: float | None = None
    init: str | None = None
    overrides: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "overrides": list(self.overrides)}

    def differences(self, stored: dict[str, Any]) -> list[str]:
        mine = self.to_dict()
        return [f"{key}: {stored.get(key)!r} then, {mine[key]!r} now" for key in mine if stored.get(key) != mine[key]]


@dataclass
class RunPlan:
    """A run ready to train: the recipe, the data and the measured step times.

    ``estimates`` are the planned seconds of each stage, ``notes`` the lines about the data to
    show the user, ``stages_done`` what a resumed run skips."""

    out: Path
    request: TrainRequest
    survey: DataSurvey
    facts: DataFacts
    recipe: Recipe
    times: StepTimes
    estimates: dict[str, float]
    datasets: RunDatasets
    device: str
    machine: str
    notes: list[str] = field(default_factory=list)
    stages_done: dict[str, Any] = field(default_factory=dict)
    init: Any = None
    dist: Distributed | None = None
    planned_seconds: float = 0.0

    def describe(self) -> str:
        """The recipe as lines for the user (see ``describe_plan``)."""
        return describe_plan(self)


# -- planning -------------------------------------------------------------------------------------


def plan_run(request: TrainRequest, out: str | os.PathLike[str], *, resume: bool = False, device: str = "auto",
             progress: bool = False, dry_run: bool = False) -> RunPlan:
    """Survey the data, choose (or, resuming, reload) the recipe, measure the step times, and
    write ``RUN/recipe.json`` (not with ``dry_run``: a plan to look at). Nothing is written when
    the data or the request is bad: DataError, ConfigError or RunError, each one line.
    ``progress`` shows the decoding of the images."""
    started = time.perf_counter()
    out = check_output_dir(out)
    stored = _read_json(out / RECIPE_FILE)
    if stored is not None and not resume:
        raise RunError(f"{out} already holds a run ({RECIPE_FILE}); add --resume to continue it, or choose another --out")
    if stored is not None:
        differences = request.differences(stored.get("request", {}))
        if differences:
            raise RunError(f"--resume: {out} was started with other settings ({'; '.join(differences)}); "
                           "repeat the command that started it")
    if request.image_size is not None and (
        request.image_size & (request.image_size - 1) or not _MIN_IMAGE_SIZE <= request.image_size <= MAX_IMAGE_SIZE
    ):
        raise RunError(f"--image-size must be a power of two from {_MIN_IMAGE_SIZE} to {MAX_IMAGE_SIZE}, got {request.image_size}")
    dist = setup_distributed(device)
    survey = survey_data(request.data)
    init = None
    if request.init is not None:
        from maskgit.training.finetune import load_init_model

        init = load_init_model(request.init)
        if request.image_size is not None and request.image_size != init.image_size:
            raise RunError(f"--image-size {request.image_size}: the --init model works at {init.image_size} px; leave it out")
    image_size = request.image_size or (init.image_size if init is not None else _image_size(survey))
    facts = DataFacts(image_size, survey.is_colour, survey.train_count, survey.held_out_count, survey.class_names,
                      builtin=survey.kind if survey.kind in BUILTIN_DATASETS else None)
    precision = _precision(dist.device)
    if stored is not None:
        recipe = Recipe.from_dict(stored["recipe"], source=str(out / RECIPE_FILE))
        if DataFacts(**{**stored["data"], "class_names": tuple(stored["data"]["class_names"])}) != facts:
            raise RunError(f"--resume: {request.data} has changed since {out} started (classes, image counts or colour)")
        times = StepTimes(**stored["step_times"])
    else:
        recipe = rules.derive_recipe(facts, precision=precision, world_size=dist.world_size, init=init)
        recipe, fixed = rules.apply_overrides(recipe, list(request.overrides), facts, init=init is not None)
    datasets = survey.datasets(image_size, flips=recipe.tokens.flips, seed=recipe.seed, progress=progress and dist.is_main)
    notes = list(survey.notes) + survey.size_notes(image_size)
    if stored is None:
        times, threads = calibrate(recipe, datasets, facts, dist, init=init)
        recipe = recipe.replace(threads=threads)
        if request.budget is not None:
            left = request.budget - (time.perf_counter() - started)
            recipe = rules.fit_budget(recipe, facts, times, left, fixed=fixed)
        recipe = rules.fit_intervals(recipe, times, fixed)
    with _kept_threads(recipe.threads):
        machine = describe_device(dist.device) + (f" x {dist.world_size} processes" if dist.world_size > 1 else "")
    estimates = rules.estimate_seconds(recipe, facts, times)
    plan = RunPlan(out, request, survey, facts, recipe, times, estimates, datasets, str(dist.device), machine, notes,
                   init=init, dist=dist, planned_seconds=time.perf_counter() - started)
    if stored is None and dist.is_main and not dry_run:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / RECIPE_FILE, json.dumps({
            "format": _FORMAT, "version": _VERSION, "request": request.to_dict(), "data": asdict(facts),
            "machine": machine, "device": plan.device, "step_times": times.to_dict(), "estimates": estimates,
            "plan_seconds": plan.planned_seconds, "recipe": recipe.to_dict(),
        }, indent=2) + "\n")
    dist.barrier()
    if stored is None and not dist.is_main and not dry_run:
        # The main process's plan, whose measured times decided the steps and intervals: every
        # process must train the same steps and log on the same ones.
        written = _read_json(out / RECIPE_FILE) or {}
        plan.recipe = Recipe.from_dict(written["recipe"], source=str(out / RECIPE_FILE))
        plan.times = StepTimes(**written["step_times"])
        plan.estimates = rules.estimate_seconds(plan.recipe, facts, plan.times)
    plan.stages_done = (_read_json(out / STAGES_FILE) or {}).get("stages", {})
    if stored is not None:  # the budget counts the first planning, not this one
        plan.planned_seconds = float(stored.get("plan_seconds", 0.0))
    return plan


def _image_size(survey: DataSurvey) -> int:
    """The data's image side for training: the power of two nearest the images' median short
    side, from 16 to 256 px (28 px digits become 32 px)."""
    import math

    side = survey.typical_side
    return int(min(_AUTO_MAX_IMAGE_SIZE, max(_MIN_IMAGE_SIZE, 2 ** round(math.log2(max(side, 1))))))


def _precision(device: torch.device) -> str:
    """bf16 on a GPU that has it and on a CPU that computes it natively, float32 elsewhere."""
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if device.type == "cpu" and cpu_has_native_bf16() else "fp32"


def _read_json(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise RunError(f"{path}: not valid JSON ({error}); it was not written by maskgit train") from None
    if not isinstance(data, dict):
        raise RunError(f"{path}: not written by maskgit train")
    return data


# -- calibration ----------------------------------------------------------------------------------


def _timed_steps(trainer: Any, warm_until: int, timed_until: int) -> float:
    """Seconds per step of ``trainer`` over steps ``[warm_until, timed_until)``, after training
    (untimed) up to ``warm_until``."""
    trainer.train(stop_at=warm_until)
    start = time.perf_counter()
    trainer.train(stop_at=timed_until)
    return (time.perf_counter() - start) / (timed_until - warm_until)


def _calibration_config(config: Any, **changes: Any) -> Any:
    return config.replace(steps=1000, checkpoint_every=0, sample_every=0, eval_every=0, log_every=1000, warmup_steps=0,
                          **changes)


@contextlib.contextmanager
def _kept_threads(threads: int = 0):
    """Run with ``threads`` CPU threads (0: as they are), and restore the caller's count after."""
    before = torch.get_num_threads()
    if threads > 0:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _choose_threads(trainer: Any, recipe: Recipe, dist: Distributed, start: int) -> tuple[int, int]:
    """Set the CPU threads of this process: ``recipe.threads``, or when that is 0 (one process on
    a CPU), the faster of one thread and all of them over a few steps of ``trainer`` from step
    ``start``. Returns the threads and the step to time from (one step after the last one run)."""
    if recipe.threads > 0:
        torch.set_num_threads(recipe.threads)
        return recipe.threads, start + 1
    available = torch.get_num_threads()
    if available == 1 or dist.world_size > 1 or dist.device.type != "cpu":
        return available, start + 1
    timed = start + 1 + _CALIBRATION_STEPS
    several = _timed_steps(trainer, start + 1, timed)
    torch.set_num_threads(1)
    one = _timed_steps(trainer, timed + 1, timed + 1 + _CALIBRATION_STEPS)
    best = 1 if one < several else available
    torch.set_num_threads(best)
    return best, timed + 2 + _CALIBRATION_STEPS


def calibrate(recipe: Recipe, datasets: RunDatasets, data: DataFacts, dist: Distributed, *,
              init: Any = None) -> tuple[StepTimes, int]:
    """Measure a few steps of every training stage of ``recipe`` (in a temporary folder, on the
    run's device and processes) and the tokenizer's encoding and the transformer's forward pass;
    choose the CPU threads (``Recipe.threads``). Returns the times and the threads."""
    from maskgit.training.tokenizer_trainer import TokenizerTrainer
    from maskgit.training.transformer_trainer import TransformerTrainer

    times: dict[str, float] = {}
    stages = recipe.stages
    threads = recipe.threads or torch.get_num_threads()
    with _kept_threads(), tempfile.TemporaryDirectory(prefix="maskgit-calibration-") as folder:
        scratch = Path(folder)
        if "tokenizer" in stages:
            config = _calibration_config(recipe.tokenizer.trainer_config(), discriminator_start=100,
                                         dead_code_reinit_every=0)
            trainer = TokenizerTrainer(config, scratch / "tokenizer", dataset=datasets.train, device=dist.device,
                                       progress=False)
            threads, warm = _choose_threads(trainer, recipe, dist, 0)
            timed = warm + _CALIBRATION_STEPS
            times["tokenizer"] = _timed_steps(trainer, warm, timed)
            times["tokenizer_with_discriminator"] = times["tokenizer"]
            if config.adversarial_weight > 0:
                start = timed + 1  # the discriminator's first step is a warm-up step of its own
                trainer.config = trainer.config.replace(discriminator_start=start)
                times["tokenizer_with_discriminator"] = _timed_steps(trainer, start + 1, start + 1 + _CALIBRATION_STEPS)
            tokenizer = trainer.model
            del trainer
        else:
            tokenizer = init.tokenizer
        if "decoder" in stages:
            initial = scratch / "initial-tokenizer"
            if dist.is_main:
                tokenizer.save_pretrained(initial)
            dist.barrier()
            config = _calibration_config(recipe.decoder, init_from=str(initial))
            trainer = TokenizerTrainer(config, scratch / "decoder", dataset=datasets.train, device=dist.device, progress=False)
            times["decoder"] = _timed_steps(trainer, 1, 1 + _CALIBRATION_STEPS)
            del trainer
        model = recipe.transformer.model
        count = max(recipe.transformer.batch_size, 2)
        # Seeded token grids: transformer steps are timed before any tokens exist.
        generator = torch.Generator().manual_seed(0)
        tokens = TensorDataset(torch.randint(0, model.codebook_size, (count, model.latent_size, model.latent_size),
                                             generator=generator), torch.arange(count) % model.num_classes)
        config = _calibration_config(recipe.transformer, init_from=None)
        trainer = TransformerTrainer(config, scratch / "transformer", dataset=tokens, class_names=data.class_names,
                                     device=dist.device, progress=False)
        warm = 1
        if "tokenizer" not in stages:
            threads, warm = _choose_threads(trainer, recipe, dist, 0)
        times["transformer"] = _timed_steps(trainer, warm, warm + _CALIBRATION_STEPS + 1)
        times["forward_sequence"] = _forward_seconds(trainer.ema.model, tokens, dist.device)
        del trainer
        times["encode_image"] = _encode_seconds(tokenizer, datasets.plain, recipe.tokens.batch_size, dist.device)
    return StepTimes(**times), threads


@torch.no_grad()
def _forward_seconds(model: torch.nn.Module, tokens: Dataset, device: torch.device) -> float:
    ids = torch.stack([tokens[i][0] for i in range(min(len(tokens), 32))]).flatten(1).to(device)  # type: ignore[arg-type]
    sequence = torch.cat([torch.full_like(ids[:, :1], model.config.codebook_size), ids], dim=1)
    model.eval()
    model(sequence)
    start = time.perf_counter()
    model(sequence)
    return (time.perf_counter() - start) / len(sequence)


@torch.no_grad()
def _encode_seconds(tokenizer: Any, dataset: Dataset, batch_size: int, device: torch.device) -> float:
    count = min(batch_size, len(dataset))  # type: ignore[arg-type]
    images = torch.stack([dataset[i][0] for i in range(count)]).to(device)
    was_training = tokenizer.training
    tokenizer.eval()
    try:
        tokenizer.encode_to_ids(images[:1])
        start = time.perf_counter()
        tokenizer.encode_to_ids(images)
        return (time.perf_counter() - start) / count
    finally:
        tokenizer.train(was_training)


# -- describing a plan ----------------------------------------------------------------------------


def describe_plan(plan: RunPlan) -> str:
    """The plan as lines for the user: the data, the machine, every stage with its model, its
    steps and its planned time, the sampler, and the total."""
    recipe, facts, estimates = plan.recipe, plan.facts, plan.estimates
    names = ", ".join(facts.class_names[:6]) + (f", ... ({len(facts.class_names)})" if len(facts.class_names) > 6 else "")
    tokenizer, transformer = recipe.tokenizer.model, recipe.transformer.model
    lines = [
        f"data         {plan.request.data}: {facts.train_images:,} training + {facts.held_out_images:,} held-out images, "
        f"{'colour' if facts.colour else 'grey'}, {facts.image_size}x{facts.image_size}; classes: {names}",
        f"machine      {plan.machine}, {plan.device}, {recipe.transformer.precision}",
    ]
    if plan.init is not None:
        lines.append(f"init         {plan.init.source}: its tokenizer is kept (train={recipe.tokenizer.train}); its transformer "
                     f"gets a new class table for {len(facts.class_names)} classes")
    side = tokenizer.latent_size
    for stage in recipe.stages:
        planned = f"~{rules.format_duration(estimates.get(stage, 0.0))}"
        if stage == "tokenizer":
            config = recipe.tokenizer
            detail = (f"VQGAN {'/'.join(map(str, tokenizer.widths))} wide, {side}x{side} tokens of {tokenizer.codebook_size} "
                      f"codes; {config.steps:,} steps of {config.batch_size}, {config.reconstruction_loss} loss, "
                      + (f"discriminator from step {config.discriminator_start:,}" if config.adversarial_weight > 0
                         else "no discriminator"))
        elif stage == "decoder":
            config = recipe.decoder
            detail = f"decoder alone (same token ids); {config.steps:,} steps of {config.batch_size}, {config.reconstruction_loss} loss"
        elif stage == "tokens":
            detail = f"{facts.train_images:,} images{' + mirrors' if recipe.tokens.flips else ''}, {facts.held_out_images:,} held out"
        elif stage == "transformer":
            config = recipe.transformer
            null = f" + null (class dropout {config.class_dropout:g})" if transformer.null_class else ""
            detail = (f"{transformer.num_layers} layers x {transformer.hidden_size}, {side}x{side}+1 tokens, "
                      f"{transformer.num_classes} classes{null}; {config.steps:,} steps of {config.batch_size}, "
                      f"lr {config.learning_rate:g}")
        else:
            detail = "the --init models with the new class table"
        lines.append(f"{stage:<12} {detail} ({planned})")
    sampler = recipe.sampler
    lines.append(f"sampler      {sampler.name}, {sampler.num_steps} steps, guidance {sampler.guidance:g} {sampler.guidance_schedule}")
    total = sum(estimates.values()) + plan.planned_seconds
    budget = f" of a {rules.format_duration(plan.request.budget)} budget" if plan.request.budget is not None else ""
    lines.append(f"expected     {rules.format_duration(total)}{budget} (the plan and measuring took {rules.format_duration(plan.planned_seconds)})")
    return "\n".join(lines)


# -- running --------------------------------------------------------------------------------------


class _Run:
    """The stages of one plan (see the module docstring)."""

    def __init__(self, plan: RunPlan, display: RunDisplay | None, log: Callable[[str], None]) -> None:
        self.plan = plan
        self.out = plan.out
        self.recipe = plan.recipe
        self.dist = plan.dist or setup_distributed(plan.device)
        self.display = display
        self.log = log
        self.done: dict[str, Any] = dict(plan.stages_done)

    # paths
    def tokenizer_folder(self) -> Path:
        """The tokenizer the later stages use: the decoder-tuned one, the trained one, or --init's."""
        stages = self.recipe.stages
        if "decoder" in stages:
            return self.out / "decoder" / "tokenizer"
        return self.out / ("tokenizer" if "tokenizer" in stages else "init") / "tokenizer"

    def _resume_point(self, folder: Path) -> Path | None:
        checkpoints = folder / "checkpoints"
        if checkpoints.is_dir() and any(CHECKPOINT_PATTERN.fullmatch(item.name) for item in checkpoints.iterdir()):
            return folder
        return None

    def _progress(self, stage: str) -> Any:
        """What a stage's trainer takes as ``progress``: the run's bar, under the run's name for the
        stage (the decoder's trainer is a tokenizer trainer, but its steps are the decoder stage's)."""
        if self.display is None:
            return False
        display = self.display
        return lambda _trainer_stage, **counts: display.stage_bar(stage, **counts)

    # stages
    def run_init(self) -> dict[str, Any]:
        from maskgit.training.finetune import with_new_classes

        init = self.plan.init
        if self.dist.is_main:
            init.tokenizer.save_pretrained(self.out / "init" / "tokenizer")
            model = self.recipe.transformer.model
            with_new_classes(init.transformer, model.num_classes, null_class=model.null_class).save_pretrained(
                self.out / "init" / "transformer")
        return {"source": init.source}

    def _train_tokenizer(self, stage: str, config: Any) -> dict[str, Any]:
        from maskgit.training.tokenizer_trainer import TokenizerTrainer

        folder = self.out / stage
        trainer = TokenizerTrainer(config.replace(eval_images=self.recipe.eval_images), folder,
                                   dataset=self.plan.datasets.train, eval_dataset=self.plan.datasets.held_out,
                                   device=self.dist.device, resume=self._resume_point(folder), progress=self._progress(stage))
        resumed = trainer.step > 0
        return {"eval": trainer.train(), "steps": config.steps, "resumed": resumed}

    def run_tokenizer(self) -> dict[str, Any]:
        return self._train_tokenizer("tokenizer", self.recipe.tokenizer.trainer_config())

    def run_decoder(self) -> dict[str, Any]:
        start = "tokenizer" if "tokenizer" in self.recipe.stages else "init"
        return self._train_tokenizer("decoder", self.recipe.decoder.replace(init_from=str(self.out / start / "tokenizer")))

    def run_tokens(self) -> dict[str, Any]:
        from maskgit.data.tokens import extract_tokens
        from maskgit.models import VQGAN

        counts = {}
        if self.dist.is_main:
            tokenizer = VQGAN.from_pretrained(self.tokenizer_folder())
            settings = self.recipe.tokens
            for name, dataset, flips in (("train", self.plan.datasets.plain, settings.flips),
                                         ("held_out", self.plan.datasets.held_out, False)):
                tokens = extract_tokens(tokenizer, dataset, self.out / "tokens" / f"{name}.tokens", batch_size=settings.batch_size,
                                        flips=flips, device=self.dist.device, progress=False)
                counts[name] = len(tokens)
        return {"sequences": counts}

    def run_transformer(self) -> dict[str, Any]:
        from maskgit.data.tokens import TokenDataset
        from maskgit.training.transformer_trainer import TransformerTrainer

        config = self.recipe.transformer
        if config.init_from is not None:
            config = config.replace(init_from=str(self.out / config.init_from))
        folder = self.out / "transformer"
        trainer = TransformerTrainer(
            config.replace(eval_images=self.recipe.eval_images), folder,
            dataset=TokenDataset(self.out / "tokens" / "train.tokens"),
            eval_dataset=TokenDataset(self.out / "tokens" / "held_out.tokens"), class_names=self.plan.facts.class_names,
            device=self.dist.device, resume=self._resume_point(folder), progress=self._progress("transformer"),
        )
        resumed = trainer.step > 0
        return {"eval": trainer.train(), "steps": config.steps, "resumed": resumed}

    def run_finish(self) -> dict[str, Any]:
        """The exported pipeline, the sample grid and the held-out reconstruction scores."""
        if not self.dist.is_main:
            return {}
        from maskgit.evaluation.reconstruction import evaluate_tokenizer
        from maskgit.imageio import make_class_grid, save_image
        from maskgit.models import VQGAN, MaskGITTransformer
        from maskgit.pipeline import MaskGIT

        tokenizer = VQGAN.from_pretrained(self.tokenizer_folder(), device=self.dist.device)
        transformer = MaskGITTransformer.from_pretrained(self.out / "transformer" / "transformer", device=self.dist.device)
        pipeline = MaskGIT(tokenizer, transformer, self.plan.facts.class_names, sampler=self.recipe.sampler.to_sampler())
        # Each reconstruction rounded to 8 bits, as a saved PNG holds it.
        scores = evaluate_tokenizer(tokenizer, self.plan.datasets.held_out, max_images=self.recipe.eval_images,
                                    quantize=True).as_dict()
        pipeline.save_pretrained(self.out / "pipeline")
        # Generated from the exported files, as `maskgit generate` would.
        pipeline = MaskGIT.from_pretrained(self.out / "pipeline", device=self.dist.device)
        pipeline.set_progress_bar_config(disable=True)
        rows = []
        for class_id, name in enumerate(self.plan.facts.class_names[:MAX_CLASSES_SHOWN]):
            images = pipeline.generate([class_id] * self.recipe.grid_per_class, seed=self.recipe.seed)
            rows.append((name, images.float().cpu()))
        save_image(make_class_grid(rows), self.out / SAMPLES_FILE)
        return {"reconstruction": scores}

    def _refit(self, stage: str) -> None:
        """With a budget: fit the steps of ``stage`` and of the training stages after it to the
        time left, at the pace measured so far (``refit_budget``), and save the recipe. A stage
        that has started (has a checkpoint) keeps its steps, so a resumed run trains exactly them."""
        from maskgit.config_base import parse_override

        plan = self.plan
        if plan.request.budget is None or self._resume_point(self.out / stage) is not None:
            return
        if self.dist.is_main:
            fixed = {parse_override(text)[0] for text in plan.request.overrides}
            seconds = {name: float(result["seconds"]) for name, result in self.done.items()}
            left = plan.request.budget - plan.planned_seconds - sum(seconds.values())
            try:
                recipe = rules.refit_budget(self.recipe, plan.facts, plan.times, left, done=seconds, fixed=fixed)
            except ValueError:
                recipe = self.recipe
                self.log(f"{stage}: the budget is spent; it keeps its planned {getattr(recipe, stage).steps:,} steps")
            stored = _read_json(self.out / RECIPE_FILE) or {}
            atomic_write_text(self.out / RECIPE_FILE, json.dumps({**stored, "recipe": recipe.to_dict()}, indent=2) + "\n")
        self.dist.barrier()
        stored = _read_json(self.out / RECIPE_FILE) or {}
        self.recipe = self.plan.recipe = Recipe.from_dict(stored["recipe"], source=str(self.out / RECIPE_FILE))
        if self.display is not None:
            self.display.estimates[stage] = rules.estimate_seconds(self.recipe, plan.facts, plan.times)[stage]

    def stage(self, name: str) -> None:
        if name in self.done:
            return
        if name in ("decoder", "transformer"):
            self._refit(name)
        if self.display is not None and name in ("init", "tokens", "finish"):
            self.display.begin(name)
        start = time.perf_counter()
        result = getattr(self, f"run_{name}")()
        self.dist.barrier()
        if self.display is not None and name in ("init", "tokens", "finish"):
            self.display.end(name)
        self.done[name] = {"seconds": round(time.perf_counter() - start, 3), **result}
        if self.dist.is_main:
            atomic_write_text(self.out / STAGES_FILE, json.dumps({"stages": self.done}, indent=2) + "\n")
            self.log(f"{name}: done in {rules.format_duration(self.done[name]['seconds'])}{_summary(name, result)}")

    def report(self) -> dict[str, Any]:
        stages = {name: {key: value for key, value in result.items()} for name, result in self.done.items()}
        transformer_eval = self.done["transformer"]["eval"]
        report = {
            "data": asdict(self.plan.facts),
            "device": self.plan.device,
            "machine": self.plan.machine,
            "tokenizer": self.done["finish"]["reconstruction"],
            "transformer": {"masked_accuracy": transformer_eval.get("accuracy"), "loss": transformer_eval.get("loss"),
                            "chance_accuracy": transformer_eval.get("chance_accuracy"),
                            "sequences": transformer_eval.get("samples")},
            "stage_seconds": {name: result["seconds"] for name, result in self.done.items()},
            "total_seconds": round(sum(result["seconds"] for result in self.done.values()), 3),
            "budget_seconds": self.plan.request.budget,
            "pipeline": str(self.out / "pipeline"),
            "samples": str(self.out / SAMPLES_FILE),
            "stages": stages,
        }
        atomic_write_text(self.out / REPORT_FILE, json.dumps(report, indent=2) + "\n")
        return report


def _summary(stage: str, result: dict[str, Any]) -> str:
    scores = result.get("eval") or result.get("reconstruction") or {}
    if stage == "transformer" and "accuracy" in scores:
        return f"; held-out masked-token accuracy {100 * scores['accuracy']:.1f} %"
    if "psnr" in scores:
        return f"; held-out PSNR {scores['psnr']:.2f} dB" + (f", SSIM {scores['ssim']:.3f}" if "ssim" in scores else "")
    if "sequences" in result:
        return "; " + ", ".join(f"{count:,} {name.replace('_', '-')} sequences" for name, count in result["sequences"].items())
    return ""


def execute_run(plan: RunPlan, *, progress: bool = True, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run every stage of ``plan`` that is not done yet and return the report (also written to
    ``RUN/report.json``). ``log`` gets one line as each stage ends; ``progress`` shows one bar for
    the whole run. Only one process at a time may run in a RUN folder."""
    dist = plan.dist or setup_distributed(plan.device)
    stages = (*plan.recipe.stages, "finish")
    estimates = {stage: plan.estimates.get(stage, 0.0) for stage in stages}
    display = RunDisplay(estimates, stages_done=tuple(plan.stages_done), enabled=progress) if dist.is_main else None
    lock = file_lock(plan.out / ".lock", wait=False, holder=str(plan.out)) if dist.is_main else contextlib.nullcontext()
    finished = False
    try:
        # The threads the plan chose, which a resumed run needs too: the same arithmetic, the same weights.
        with lock, _kept_threads(plan.recipe.threads):
            if dist.is_main:  # temporary files of writes that a kill cut short
                remove_temp_files(plan.out, recursive=True)
            run = _Run(plan, display, display.write if display is not None and progress else log)
            for stage in stages:
                run.stage(stage)
            report = run.report() if dist.is_main else {}
            finished = True
    finally:
        if display is not None:
            display.finish()
        dist.close(wait=finished)  # an error may stop the other processes before they get here
    return report

