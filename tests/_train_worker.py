"""Runs a tiny training in a separate process, for the kill-and-resume and torchrun tests.

    python tests/_train_worker.py STAGE OUT OVERRIDES_JSON [KILL_AT]

Trains ``make_trainer(STAGE, OUT, OVERRIDES)``; with KILL_AT, stops at that step and kills itself
with SIGKILL (no cleanup, no export), as a crash would. Under torchrun every rank runs this.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import torch  # noqa: E402

from training_helpers import make_trainer  # noqa: E402


def main() -> None:
    torch.set_num_threads(int(os.environ.get("WORKER_THREADS", "1")))
    stage, out, overrides = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    kill_at = int(sys.argv[4]) if len(sys.argv) > 4 else None
    trainer = make_trainer(stage, out, overrides)
    if kill_at is not None:
        trainer.train(stop_at=kill_at)
        os.kill(os.getpid(), signal.SIGKILL)
    # As the commands do: every rank waits for the others before leaving the group.
    with trainer:
        trainer.train()


if __name__ == "__main__":
    main()
