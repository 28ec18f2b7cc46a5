"""Device names: auto, cpu, cuda[:N], and clear errors for everything else."""

from __future__ import annotations

import pytest
import torch

from maskgit.devices import resolve_device


def test_auto_and_cpu():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected and resolve_device(None).type == expected
    assert resolve_device(" AUTO ").type == expected
    assert resolve_device("cpu") == torch.device("cpu") and resolve_device(torch.device("cpu")).type == "cpu"


@pytest.mark.parametrize("spec", ["potato", "", "cuda:x", "cuda:-1", "gpu"])
def test_unknown_names_list_the_valid_forms(spec):
    with pytest.raises(ValueError, match=r"device .*expected auto .*cpu, cuda, cuda:N"):
        resolve_device(spec)


def test_devices_we_cannot_run_on_are_refused():
    with pytest.raises(ValueError, match="unsupported device 'meta'"):
        resolve_device("meta")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="device 'cuda:1': CUDA is not available on this machine"):
            resolve_device("cuda:1")
    else:
        count = torch.cuda.device_count()
        with pytest.raises(ValueError, match=f"has {count} CUDA device"):
            resolve_device(f"cuda:{count}")
