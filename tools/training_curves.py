"""Loss and accuracy curves of a two-stage training run, as one PNG (needs matplotlib).

    python tools/training_curves.py --tokenizer RUN_DIR --transformer RUN_DIR --out docs/training-curves.png

Reads each run folder's ``metrics.jsonl`` (what ``maskgit train-tokenizer`` / ``train-transformer``
write): training rows carry ``step`` and the logged losses, evaluation rows ``eval/...`` keys. Plots
the tokenizer's reconstruction loss and PSNR, and the transformer's masked-token cross-entropy and
accuracy, each with its evaluation points on the test set. Either run may be left out; the figure
then holds the other's two panels.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def read_metrics(run: Path) -> tuple[list[dict], list[dict]]:
    """Training rows and evaluation rows of ``run/metrics.jsonl``."""
    path = run / "metrics.jsonl"
    if not path.is_file():
        raise SystemExit(f"{path}: no such file (is {run} a training run folder?)")
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    train = [row for row in rows if not any(name.startswith("eval/") for name in row)]
    evaluation = [row for row in rows if any(name.startswith("eval/") for name in row)]
    return train, evaluation


def reconstruction_loss_name(run: Path) -> str:
    """"L1" or "L2": the ``reconstruction_loss`` in the run's stored ``config.json`` (L2 when absent,
    the trainer's default and the only loss of runs made before the setting existed)."""
    path = run / "config.json"
    config = json.loads(path.read_text()) if path.is_file() else {}
    return config.get("reconstruction_loss", "l2").upper()


def _series(rows: list[dict], name: str) -> tuple[list[int], list[float]]:
    points = [(row["step"], row[name]) for row in rows if row.get(name) is not None]
    return [p[0] for p in points], [p[1] for p in points]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokenizer", type=Path, help="the tokenizer's run folder (or a decoder fine-tuning run)")
    parser.add_argument("--transformer", type=Path, help="the transformer's run folder")
    parser.add_argument("--out", type=Path, required=True, help="the PNG to write")
    args = parser.parse_args()
    if args.tokenizer is None and args.transformer is None:
        parser.error("give --tokenizer, --transformer or both")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = []
    if args.tokenizer is not None:
        tok_train, tok_eval = read_metrics(args.tokenizer)
        loss = reconstruction_loss_name(args.tokenizer)
        panels += [
            (f"tokenizer: {loss} reconstruction loss", tok_train, "reconstruction", None, None, True),
            ("tokenizer: PSNR (dB)", tok_train, "psnr", tok_eval, "eval/psnr", False),
        ]
    if args.transformer is not None:
        tr_train, tr_eval = read_metrics(args.transformer)
        panels += [
            ("transformer: masked-token cross-entropy", tr_train, "loss", tr_eval, "eval/loss", False),
            ("transformer: masked-token accuracy (%)", tr_train, "masked_accuracy", tr_eval, "eval/accuracy", False),
        ]
    rows = len(panels) // 2
    figure, axes = plt.subplots(rows, 2, figsize=(10, 3.5 * rows), squeeze=False)
    for axis, (title, train, name, evaluation, eval_name, log) in zip(axes.flat, panels):
        scale = 100 if "accuracy" in name else 1
        steps, values = _series(train, name)
        axis.plot(steps, [scale * v for v in values], linewidth=0.8, label="training batches")
        if evaluation and eval_name:
            steps, values = _series(evaluation, eval_name)
            axis.plot(steps, [scale * v for v in values], "o-", label="test set (EMA weights)")
        if log:
            axis.set_yscale("log")
        axis.set_title(title, fontsize=10)
        axis.set_xlabel("optimizer step")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    figure.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
