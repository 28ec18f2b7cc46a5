"""Runs ``maskgit train`` in a process of its own, optionally killing itself with SIGKILL inside
one stage, as a crash would (no clean-up, nothing flushed).

    python tests/_train_run_worker.py KILL_IN -- ARGS...

KILL_IN is ``none``, ``tokenizer`` or ``transformer`` (killed as step 3 starts, after the
checkpoint of step 2), ``tokens`` (killed as the first batch of tokens is written) or ``finish``
(killed after the pipeline is exported, before the sample grid).
"""

from __future__ import annotations

import os
import signal
import sys


def _kill(*_args, **_kwargs):
    os.kill(os.getpid(), signal.SIGKILL)


def _kill_at_step_3(original):
    def train_step(self, micro_batches):
        if self.step == 3 and "maskgit-calibration" not in str(self.out_dir):  # the run's, not the calibration's
            _kill()
        return original(self, micro_batches)

    return train_step


def main() -> int:
    kill_in, arguments = sys.argv[1], sys.argv[3:]
    if kill_in in ("tokenizer", "transformer"):
        from maskgit.training.tokenizer_trainer import TokenizerTrainer
        from maskgit.training.transformer_trainer import TransformerTrainer

        trainer = TokenizerTrainer if kill_in == "tokenizer" else TransformerTrainer
        trainer.train_step = _kill_at_step_3(trainer.train_step)
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
