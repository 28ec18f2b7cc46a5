"""Runs ``maskgit train`` in a process of its own, optionally killing itself with SIGKILL inside
one stage, as a crash would (no clean-up, nothing flushed).

    python tests/_train_run_worker.py KILL_IN -- ARGS...

KILL_IN is ``none``, ``tokenizer``, ``decoder`` or ``transformer`` (killed as step 3 starts, after the
checkpoint of step 2), ``tokens`` (killed as the first batch of tokens is written) or ``finish``
(killed after the pipeline is exported, before the sample grid).
"""

from __future__ import annotations

import os
import signal
import sys


def _kill(*_args, **_kwargs):
    os.kill(os.getpid(), signal.SIGKILL)


def _kill_at_step_3(original, stage):
    def train_step(self, micro_batches):
        # The run's stage folder, not the calibration's (the decoder's trainer is a tokenizer trainer too).
        if self.step == 3 and self.out_dir.name == stage and "maskgit-calibration" not in str(self.out_dir):
            _kill()
        return original(self, micro_batches)

    return train_step


def main() -> int:
    kill_in, arguments = sys.argv[1], sys.argv[3:]
    if kill_in in ("tokenizer", "decoder", "transformer"):
        from maskgit.training.tokenizer_trainer import TokenizerTrainer
        from maskgit.training.transformer_trainer import TransformerTrainer

        trainer = TransformerTrainer if kill_in == "transformer" else TokenizerTrainer
        trainer.train_step = _kill_at_step_3(trainer.train_step, kill_in)
    elif kill_in == "tokens":
        from maskgit.data.tokens import TokenFileWriter

        TokenFileWriter.write = _kill
    elif kill_in == "finish":
        import maskgit.imageio

        maskgit.imageio.make_class_grid = _kill
    from maskgit.cli import main as cli

    return cli(arguments)


if __name__ == "__main__":
    sys.exit(main())
