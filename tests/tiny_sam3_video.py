"""Random-init SAM 3 video model (`Sam3VideoModel`: detector + tracker) saved like a real checkpoint.

It loads through the very `from_pretrained` path real weights use (facebook/sam3 holds both parts in one directory,
and so does this one: `Sam3Model.from_pretrained` reads the image detector out of it through `detector_config`).
The detector is tests/tiny_models.py's tiny SAM 3 (2-layer ViT, BERT word pieces over `WORDS`) on 112-px inputs,
widened to the tracker's width; the tracker is a tiny SAM 2-style memory model on the detector's features.
"""

from __future__ import annotations

from pathlib import Path

import torch

from tests.tiny_models import _bert_tokenizer, write_vocab

SIDE = 112  # input pixels (square); the ViT (patch 14) sees an 8 x 8 grid
GRID = SIDE // 14
HIDDEN = 128  # the tracker splits its object pointer into HIDDEN // 64 memory tokens: 64 (= 1 token) breaks upstream
NUM_QUERIES = 2  # detections per prompt and frame: few objects keep the tests fast


def _vision_config():
    from transformers import Sam3ViTConfig, Sam3VisionConfig

    vit = Sam3ViTConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                        image_size=SIDE, patch_size=14, window_size=8, global_attn_indexes=[0, 1],
                        pretrain_image_size=SIDE)
    # four FPN levels (4x, 2x, 1x, 0.5x the ViT grid) as in facebook/sam3: the tracker reads the first three
    return Sam3VisionConfig(backbone_config=vit, fpn_hidden_size=HIDDEN, scale_factors=[4.0, 2.0, 1.0, 0.5],
                            backbone_feature_sizes=[[4 * GRID] * 2, [2 * GRID] * 2, [GRID] * 2])


def sam3_video_config(vocab_size: int):
    """A tiny `Sam3VideoConfig`. The tracker gets `image_size=SIDE` so its feature sizes (32/16/8), RoPE sizes and
    prompt-encoder grid match the detector's 112-px input; low-resolution masks are 4 x 8 = 32 px on both sides.

    Thresholds differ from facebook/sam3 on purpose: new objects need no more than a detection's score (the adapter's
    `threshold` then decides alone), and reconditioning on detections happens every 2nd frame at any confidence, so
    random weights exercise that path (and the conditioning-frame pruning) within a few frames. The memory windows are
    small (2 spatial memories, 3 pointer frames, 2 conditioning frames, 2-entry hotstart lists) so pruning shows
    within a short clip."""
    from transformers import (CLIPTextConfig, Sam3Config, Sam3DETRDecoderConfig, Sam3DETREncoderConfig,
                              Sam3GeometryEncoderConfig, Sam3MaskDecoderConfig, Sam3TrackerVideoConfig,
                              Sam3TrackerVideoMaskDecoderConfig, Sam3TrackerVideoPromptEncoderConfig, Sam3VideoConfig)

    text = CLIPTextConfig(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, projection_dim=32,
                          num_hidden_layers=1, num_attention_heads=2, max_position_embeddings=32, pad_token_id=0,
                          bos_token_id=2, eos_token_id=3)
    small = {"hidden_size": HIDDEN, "num_attention_heads": 2}
    detector = Sam3Config(
        vision_config=_vision_config(), text_config=text,
        geometry_encoder_config=Sam3GeometryEncoderConfig(num_layers=1, intermediate_size=64, **small),
        detr_encoder_config=Sam3DETREncoderConfig(num_layers=1, intermediate_size=64, **small),
        detr_decoder_config=Sam3DETRDecoderConfig(num_layers=1, num_queries=NUM_QUERIES, intermediate_size=64,
                                                  **small),
        mask_decoder_config=Sam3MaskDecoderConfig(num_upsampling_stages=3, **small))
    tracker = Sam3TrackerVideoConfig(
        vision_config=_vision_config(),
        prompt_encoder_config=Sam3TrackerVideoPromptEncoderConfig(hidden_size=HIDDEN, image_size=SIDE, patch_size=14,
                                                                  mask_input_channels=8),
        mask_decoder_config=Sam3TrackerVideoMaskDecoderConfig(hidden_size=HIDDEN, mlp_dim=64, num_hidden_layers=2,
                                                              num_attention_heads=4, iou_head_hidden_dim=32),
        image_size=SIDE, num_maskmem=3, max_object_pointers_in_encoder=4, max_cond_frame_num=2,
        memory_attention_hidden_size=HIDDEN, memory_attention_num_layers=1,
        memory_attention_feed_forward_hidden_size=64, memory_encoder_hidden_size=HIDDEN,
        mask_downsampler_embed_dim=HIDDEN, memory_fuser_embed_dim=HIDDEN, memory_fuser_intermediate_dim=64)
    return Sam3VideoConfig(detector_config=detector, tracker_config=tracker, low_res_mask_size=4 * GRID,
                           score_threshold_detection=0.5, new_det_thresh=0.5, recondition_every_nth_frame=2,
                           high_conf_thresh=0.0, high_iou_thresh=0.5, hotstart_delay=2, hotstart_unmatch_thresh=2,
                           hotstart_dup_thresh=2)


def save_sam3_video(directory: Path, seed: int = 0) -> Path:
    """Build a random-init tiny `Sam3VideoModel` and `save_pretrained` it with its `Sam3VideoProcessor` (112-px image
    processor, 32-px masks, BERT word-piece tokenizer) into `directory`; returns `directory`."""
    from transformers import Sam2VideoVideoProcessor, Sam3ImageProcessor, Sam3VideoModel, Sam3VideoProcessor

    torch.manual_seed(seed)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer = _bert_tokenizer(write_vocab(directory / "vocab.txt"))
    model = Sam3VideoModel(sam3_video_config(tokenizer.vocab_size)).eval()
    # Random weights make the tracker's masks empty after an object's first frame, so every frame's detections would
    # start new objects (a session growing by 4 objects a frame). A constant mask hypernetwork (masks ~ the sum of
    # the positive upscaled features: most of the frame) and a confident object-score head keep objects alive.
    decoder = model.tracker_model.mask_decoder
    with torch.no_grad():
        for mlp in decoder.output_hypernetworks_mlps:
            mlp.proj_out.weight.zero_()
            mlp.proj_out.bias.fill_(1.0)
        decoder.pred_obj_score_head.proj_out.bias.fill_(2.0)
    model.save_pretrained(directory)
    image_processor = Sam3ImageProcessor(size={"height": SIDE, "width": SIDE},
                                         mask_size={"height": 4 * GRID, "width": 4 * GRID})
    video_processor = Sam2VideoVideoProcessor(size={"height": SIDE, "width": SIDE})
    Sam3VideoProcessor(image_processor=image_processor, video_processor=video_processor,
                       tokenizer=tokenizer).save_pretrained(directory)
    return directory
