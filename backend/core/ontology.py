"""What a project asks for: its label config reduced to controls, labels and prompts.

Built by `backend.labelstudio.config.parse_label_config`; consumed by pipelines and converters.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

# Control tags we can fill, and the Label Studio result type each produces.
SUPPORTED_CONTROLS = {
    "RectangleLabels": "rectanglelabels",
    "PolygonLabels": "polygonlabels",
    "BrushLabels": "brushlabels",
    "KeyPointLabels": "keypointlabels",
    "Choices": "choices",
    "VideoRectangle": "videorectangle",
}
MASK_CONTROLS = ("BrushLabels", "PolygonLabels")
BOX_CONTROLS = ("RectangleLabels",) + MASK_CONTROLS  # image regions with a box (a mask's is the box around it)
BOX_RESULT_TYPES = tuple(SUPPORTED_CONTROLS[tag] for tag in BOX_CONTROLS)  # their Label Studio result types
REGION_CONTROLS = tuple(tag for tag in SUPPORTED_CONTROLS if tag != "Choices")  # what a detector's boxes fill
VIDEO_CONTROLS = ("VideoRectangle",)


@dataclass(frozen=True)
class Control:
    """One control tag of the config that targets an image (or, for `VideoRectangle`, a video).

    Attributes:
        name: the control's `name` (Label Studio `from_name`).
        tag: e.g. "RectangleLabels".
        to_name: the `<Image>` (or `<Video>`) tag's name (Label Studio `to_name`).
        image_key: the task data key holding the image URL (`$image` → "image"), or the video URL for a video control.
        labels: label values in config order (for `VideoRectangle`: those of the `<Labels>` on the same video).
        multiple: for Choices, whether several may be chosen.
        frame_rate: for a video control, the `<Video>` tag's `framerate` attribute as written (a number, or
            `$key` for a task data field); "" when absent (Label Studio then uses 24) and for images.
    """

    name: str
    tag: str
    to_name: str
    image_key: str
    labels: tuple[str, ...]
    multiple: bool = False
    frame_rate: str = ""

    @property
    def result_type(self) -> str:
        return SUPPORTED_CONTROLS[self.tag]

    @property
    def is_video(self) -> bool:
        return self.tag in VIDEO_CONTROLS


@dataclass(frozen=True)
class Ontology:
    """Controls plus, per label value, text prompts and classifier class names.

    `prompts[label]` defaults to (label,); `class_names[label]` is empty unless the config's
    `predicted_values` attribute or the project's `extra_params` name classifier classes.
    """

    controls: tuple[Control, ...]
    prompts: dict[str, tuple[str, ...]] = field(default_factory=dict)
    class_names: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def labels(self) -> tuple[str, ...]:
        """Every label value, unique, in config order."""
        return tuple(dict.fromkeys(label for c in self.controls for label in c.labels))

    @property
    def image_keys(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(c.image_key for c in self.controls))

    @property
    def wants_masks(self) -> bool:
        return any(c.tag in MASK_CONTROLS for c in self.controls)

    def controls_for(self, image_key: str) -> tuple[Control, ...]:
        return tuple(c for c in self.controls if c.image_key == image_key)

    def with_controls(self, keep) -> "Ontology":
        """The same ontology with only the controls `keep(control)` accepts."""
        return replace(self, controls=tuple(c for c in self.controls if keep(c)))

    def restricted_to(self, labels: set[str] | tuple[str, ...]) -> "Ontology":
        """The same ontology with only `labels` left in each control; controls left empty are dropped."""
        controls = tuple(replace(c, labels=tuple(l for l in c.labels if l in labels)) for c in self.controls)
        return replace(self, controls=tuple(c for c in controls if c.labels))
