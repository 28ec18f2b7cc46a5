"""Settings for torch's CPU allocator, applied when ``maskgit`` is imported (before torch
allocates anything, for them to take effect).

``THP_MEM_ALLOC_ENABLE=1`` makes torch back large CPU tensors with transparent huge pages. Sampling
allocates activation-sized tensors afresh at every layer, and with 4 KiB pages each one costs a
page fault per page: on this project's CPU (2 threads), the ImageNet-256 decoder in bf16 at batch 8
takes 2.3 s without huge pages and 1.8 s with them. A value already set in the environment wins,
so ``THP_MEM_ALLOC_ENABLE=0`` turns it off.
"""

import os

os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")
