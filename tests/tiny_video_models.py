"""Random-init SAM 2 video model built from a config and saved like a real checkpoint.

It loads through the very `from_pretrained` path real weights use. `size="tiny"` (a 128-px Hiera, as in
upstream transformers' Sam2 tests) for unit tests, `size="full"` for the architecture of
facebook/sam2.1-hiera-tiny (random weights: for speed and memory measurements only).
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np
import torch


def _sam2_video_config(size: str):
    from transformers import (Sam2HieraDetConfig, Sam2VideoConfig, Sam2VideoMaskDecoderConfig,
                              Sam2VideoPromptEncoderConfig, Sam2VisionConfig)

    if size == "full":  # sam2.1-hiera-tiny: Hiera-T trunk (96 wide, 1-2-7-2 blocks) on the default 1024-px heads
        backbone = Sam2HieraDetConfig(hidden_size=96, blocks_per_stage=[1, 2, 7, 2],
                                      embed_dim_per_stage=[96, 192, 384, 768],
                                      num_attention_heads_per_stage=[1, 2, 4, 8], window_size_per_stage=[8, 4, 14, 7],
                                      global_attention_blocks=[5, 7, 9],
                                      window_positional_embedding_background_size=[7, 7])
        vision = Sam2VisionConfig(backbone_config=backbone, backbone_channel_list=[768, 384, 192, 96])
        return Sam2VideoConfig(vision_config=vision), 1024
    if size != "tiny":
        raise ValueError(f"size must be 'tiny' or 'full', not {size!r}")
    side, hidden = 128, 128  # the object pointer (hidden wide) is split into hidden // 64 memory tokens: >= 128
    backbone = Sam2HieraDetConfig(hidden_size=12, image_size=[side, side], blocks_per_stage=[1, 2, 7, 2],
                                  embed_dim_per_stage=[12, 24, 48, 96], num_attention_heads_per_stage=[1, 2, 4, 8],
                                  window_positional_embedding_background_size=[7, 7])
    vision = Sam2VisionConfig(backbone_config=backbone, backbone_channel_list=[96, 48, 24, 12],
                              backbone_feature_sizes=[[32, 32], [16, 16], [8, 8]], fpn_hidden_size=hidden)
    prompt = Sam2VideoPromptEncoderConfig(hidden_size=hidden, image_size=side, patch_size=16, mask_input_channels=8)
    decoder = Sam2VideoMaskDecoderConfig(hidden_size=hidden, mlp_dim=64, num_hidden_layers=2, num_attention_heads=4,
                                         iou_head_hidden_dim=32)
    # memory_encoder_output_channels stays 64: the memory cross-attention's key/value width is fixed at 64 upstream
    config = Sam2VideoConfig(
        vision_config=vision, prompt_encoder_config=prompt, mask_decoder_config=decoder, image_size=side,
        memory_attention_hidden_size=hidden, memory_attention_num_layers=1,
        memory_attention_feed_forward_hidden_size=64, memory_attention_rope_feat_sizes=[8, 8],
        memory_encoder_hidden_size=hidden, mask_downsampler_embed_dim=hidden, memory_fuser_embed_dim=hidden,
        memory_fuser_intermediate_dim=64)
    return config, side


def save_sam2_video(directory: Path, size: str = "tiny", seed: int = 0) -> Path:
    """Build a random-init `Sam2VideoModel` ("tiny" or "full") and `save_pretrained` it with its
    `Sam2VideoProcessor` into `directory`; returns `directory`."""
    from transformers import Sam2ImageProcessor, Sam2VideoModel, Sam2VideoProcessor, Sam2VideoVideoProcessor

    torch.manual_seed(seed)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    config, side = _sam2_video_config(size)
    model = Sam2VideoModel(config).eval()
    model.save_pretrained(directory)
    mask_side = side // 4  # the mask decoder's low-resolution output
    image_processor = Sam2ImageProcessor(size={"height": side, "width": side},
                                         mask_size={"height": mask_side, "width": mask_side})
    video_processor = Sam2VideoVideoProcessor(size={"height": side, "width": side})
    Sam2VideoProcessor(image_processor=image_processor, video_processor=video_processor).save_pretrained(directory)
    return directory


def moving_square(n: int, h: int, w: int, step: int, seed: int = 0, top: int = 20, side: int = 30,
                  left: int = 5) -> Iterator[np.ndarray]:
    """A generator of `n` uint8 (h, w, 3) frames: a bright `side`-pixel square moving `step` pixels right per frame
    over dark noise, from (`left`, `top`)."""
    rng = np.random.default_rng(seed)
    for i in range(n):
        frame = rng.integers(0, 60, (h, w, 3), dtype=np.uint8)
        frame[top:top + side, left + step * i:left + step * i + side] = 230
        yield frame
