"""Random-init Grounding DINO, SAM and SAM 3 built from configs and saved like real checkpoints.

They load through the very `from_pretrained` path real weights use. `size="tiny"` for unit tests,
`size="full"` for the architecture of grounding-dino-tiny / sam-vit-base (random weights: for speed only).
"""

from __future__ import annotations

from pathlib import Path

import torch

WORDS = ["cat", "kitten", "cup", "mug", "dog", "puppy", "sign", "road", "stop", "tree", "car", "person", "a", "the"]


def write_vocab(path: Path) -> Path:
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", ",", ";", "?"] + WORDS
    tokens += [f"##{c}" for c in "abcdefghijklmnopqrstuvwxyz"] + list("abcdefghijklmnopqrstuvwxyz")
    path.write_text("\n".join(tokens) + "\n")
    return path


def _bert_tokenizer(vocab: Path):
    """A BERT word-piece tokenizer over the local `vocab` file (transformers 4 and 5 spell this differently)."""
    import inspect

    from transformers import BertTokenizerFast

    if "vocab" in inspect.signature(BertTokenizerFast.__init__).parameters:
        tokens = vocab.read_text().split()
        return BertTokenizerFast(vocab={t: i for i, t in enumerate(tokens)}, do_lower_case=True)
    return BertTokenizerFast(vocab_file=str(vocab), do_lower_case=True)


def save_grounding_dino(directory: Path, size: str = "tiny", seed: int = 0) -> Path:
    from transformers import (BertConfig, GroundingDinoConfig, GroundingDinoForObjectDetection,
                              GroundingDinoImageProcessor, GroundingDinoProcessor, SwinConfig)

    torch.manual_seed(seed)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    vocab = write_vocab(directory / "vocab.txt")
    tokenizer = _bert_tokenizer(vocab)
    if size == "full":
        config = GroundingDinoConfig(text_config=BertConfig(vocab_size=tokenizer.vocab_size))
        image_processor = GroundingDinoImageProcessor()
    else:
        backbone = SwinConfig(embed_dim=16, depths=[1, 1, 1, 1], num_heads=[1, 1, 1, 1], window_size=7,
                              out_features=["stage2", "stage3", "stage4"])
        text = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=1,
                          num_attention_heads=2, intermediate_size=64, max_position_embeddings=256)
        config = GroundingDinoConfig(
            backbone_config=backbone, text_config=text, d_model=32, encoder_layers=1, decoder_layers=2,
            encoder_ffn_dim=64, decoder_ffn_dim=64, encoder_attention_heads=2, decoder_attention_heads=2,
            num_queries=30, num_feature_levels=4, encoder_n_points=2, decoder_n_points=2)
        image_processor = GroundingDinoImageProcessor(size={"shortest_edge": 160, "longest_edge": 240})
    model = GroundingDinoForObjectDetection(config).eval()
    model.save_pretrained(directory)
    GroundingDinoProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(directory)
    return directory


def save_sam(directory: Path, size: str = "tiny", seed: int = 0) -> Path:
    from transformers import (SamConfig, SamImageProcessor, SamMaskDecoderConfig, SamModel, SamProcessor,
                              SamPromptEncoderConfig, SamVisionConfig)

    torch.manual_seed(seed)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if size == "full":
        config = SamConfig()  # sam-vit-base architecture
        image_processor = SamImageProcessor()
    else:
        vision = SamVisionConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, mlp_dim=64,
                                 output_channels=32, image_size=256, patch_size=16, global_attn_indexes=[1],
                                 window_size=4, num_pos_feats=16)
        prompt = SamPromptEncoderConfig(hidden_size=32, image_size=256, patch_size=16, mask_input_channels=4)
        decoder = SamMaskDecoderConfig(hidden_size=32, mlp_dim=64, num_hidden_layers=2, num_attention_heads=2,
                                       iou_head_hidden_dim=32)
        config = SamConfig(vision_config=vision, prompt_encoder_config=prompt, mask_decoder_config=decoder)
        image_processor = SamImageProcessor(size={"longest_edge": 256}, pad_size={"height": 256, "width": 256})
    model = SamModel(config).eval()
    model.save_pretrained(directory)
    SamProcessor(image_processor=image_processor).save_pretrained(directory)
    return directory


def save_sam3(directory: Path, size: str = "tiny", seed: int = 0) -> Path:
    """A random-init SAM 3 image model (`Sam3Model`) and its processor. "tiny": a 2-layer ViT on 224-pixel inputs,
    one-layer text encoder (BERT word pieces over `WORDS`), 10 queries; "full": facebook/sam3's architecture (with
    the same small tokenizer: only speed is measured with it)."""
    from transformers import (CLIPTextConfig, Sam3Config, Sam3DETRDecoderConfig, Sam3DETREncoderConfig,
                              Sam3GeometryEncoderConfig, Sam3ImageProcessor, Sam3MaskDecoderConfig, Sam3Model,
                              Sam3Processor, Sam3ViTConfig, Sam3VisionConfig)

    torch.manual_seed(seed)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer = _bert_tokenizer(write_vocab(directory / "vocab.txt"))
    if size == "full":
        config = Sam3Config(text_config={"vocab_size": tokenizer.vocab_size, "pad_token_id": 0})
        image_processor = Sam3ImageProcessor()
    else:
        vit = Sam3ViTConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                            image_size=224, patch_size=14, window_size=8, global_attn_indexes=[0, 1],
                            pretrain_image_size=224)
        vision = Sam3VisionConfig(backbone_config=vit, fpn_hidden_size=32, scale_factors=[2.0, 1.0, 0.5],
                                  backbone_feature_sizes=[[32, 32], [16, 16], [8, 8]])
        text = CLIPTextConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, intermediate_size=64, projection_dim=32,
                              num_hidden_layers=1, num_attention_heads=2, max_position_embeddings=32, pad_token_id=0,
                              bos_token_id=2, eos_token_id=3)
        small = {"hidden_size": 32, "num_attention_heads": 2}
        config = Sam3Config(
            vision_config=vision, text_config=text,
            geometry_encoder_config=Sam3GeometryEncoderConfig(num_layers=1, intermediate_size=64, **small),
            detr_encoder_config=Sam3DETREncoderConfig(num_layers=1, intermediate_size=64, **small),
            detr_decoder_config=Sam3DETRDecoderConfig(num_layers=1, num_queries=10, intermediate_size=64, **small),
            mask_decoder_config=Sam3MaskDecoderConfig(num_upsampling_stages=2, **small))
        image_processor = Sam3ImageProcessor(size={"height": 224, "width": 224}, mask_size={"height": 16, "width": 16})
    model = Sam3Model(config).eval()
    model.save_pretrained(directory)
    Sam3Processor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(directory)
    return directory
