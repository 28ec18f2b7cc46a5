"""Runs: what the generation commands, the studio and the sampler comparison make, from Python.

- ``plan``: ``RunPlan`` (classes x images per class, each image's index, class and file) and
  ``RunCost`` (the windows, steps and transformer passes of one image, and their limit).
- ``run``: ``Run`` (a plan, a sampler and a seed; the one resumable, shardable loop that makes and
  writes the images) and ``resolve_seed`` (the seed rule).
- ``manifest``: the typed settings that ``manifest.json`` records (``GenerateSettings``, ``EditSettings``,
  ...), and ``read_manifest``.
- ``folder``: ``OutputFolder``, the rules of an output folder (lock, resume, overwrite).
- ``npz``: a written run packed as an ADM ``.npz``.

    from maskgit import MaskGIT
    from maskgit.runs import Run, RunPlan

    pipe = MaskGIT.from_pretrained("fashion-mnist")
    run = Run(RunPlan(classes=(0, 7), per_class=8), pipe.sampler, seed=0)
    run.write(pipe, "out", batch_size=8)  # out/0000/0000.png ... out/0007/0007.png; again: makes what is missing
"""

from maskgit.runs.folder import OutputFolder
from maskgit.runs.manifest import Manifest, read_manifest
from maskgit.runs.npz import pack_npz
from maskgit.runs.plan import RunCost, RunPlan
from maskgit.runs.run import Run, resolve_seed, still_to_make

__all__ = ["Run", "RunPlan", "RunCost", "resolve_seed", "OutputFolder", "Manifest", "read_manifest", "pack_npz", "still_to_make"]
