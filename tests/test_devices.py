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


def test_native_bf16_is_read_from_the_cpu_flags():
    from maskgit.devices import native_bf16_from_cpuinfo

    zen2 = "processor\t: 0\nflags\t\t: fpu sse2 avx avx2 fma\n\nprocessor\t: 1\nflags\t\t: fpu avx512_bf16\n"
    assert native_bf16_from_cpuinfo(zen2) is False  # the first CPU's line decides
    assert native_bf16_from_cpuinfo("flags : avx2 avx512f avx512_bf16 avx512_vnni\n") is True
    assert native_bf16_from_cpuinfo("flags : avx2 amx_tile amx_bf16\n") is True
    assert native_bf16_from_cpuinfo("Features\t: fp asimd bf16 i8mm\n") is True  # Arm
    assert native_bf16_from_cpuinfo("Features\t: fp asimd\n") is False
    assert native_bf16_from_cpuinfo("model name : something\n") is None


@pytest.mark.parametrize("native", [False, True, None])
def test_bf16_on_a_cpu_without_it_warns_in_inference_and_training(monkeypatch, tmp_path, recwarn, native):
    import maskgit.devices
    from maskgit.models.inference import check_precision
    from training_helpers import make_trainer

    monkeypatch.setattr(maskgit.devices, "cpu_has_native_bf16", lambda: native)
    check_precision("bf16", "cpu")
    make_trainer("transformer", tmp_path / "bf16", {"precision": "bf16"})
    check_precision("fp32", "cpu")
    make_trainer("transformer", tmp_path / "fp32", {"precision": "fp32"})
    messages = [str(w.message) for w in recwarn if "bfloat16" in str(w.message)]
    if native is False:  # only a CPU known to lack it warns, once per bf16 use, naming the setting
        assert len(messages) == 2
        assert messages[0].startswith("precision bf16: this CPU has no native bfloat16") and "--precision fp32" in messages[0]
        assert messages[1].startswith("training precision bf16:") and "--set precision=fp32" in messages[1]
    else:
        assert messages == []


def test_describe_device_names_the_cpu_and_its_threads():
    import torch

    from maskgit.devices import describe_device

    threads = torch.get_num_threads()
    text = describe_device("cpu")
    assert text.endswith(f"CPU, {threads} thread{'s' if threads != 1 else ''}") and len(text) > len(" CPU, 1 thread")
