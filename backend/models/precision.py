"""Where a detector runs in bf16 autocast (training and, when its spec asks, inference): weights stay float32,
matrix products and convolutions run in bfloat16 where the hardware does them natively."""

from __future__ import annotations

import torch


def autocast_device(device: str, cpu_bf16: bool) -> str | None:
    """Where to run in bf16 autocast: "cuda" on a GPU; "cpu" when `cpu_bf16` and the CPU has native bf16
    dot products (AVX512-BF16 or AMX), where a training step of the cached-feature recipe takes 0.65-0.8 of its
    float32 time (20-35 % more epochs in a budget on the 2-core benchmark machine) and a prediction 0.6-0.7;
    else None (emulated bf16 would be slower than float32)."""
    if device.startswith("cuda"):
        return "cuda"
    cpu = getattr(torch, "cpu", None)
    native = any(getattr(cpu, name, lambda: False)()
                 for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"))
    return "cpu" if cpu_bf16 and device == "cpu" and native else None
