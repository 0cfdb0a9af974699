"""Label config XML → `Ontology`, parsed with label-studio-sdk's `LabelInterface`.

Per-label attributes read from `<Label>` / `<Choice>`:
- `prompt`: text prompt(s) for open-set detection, several separated by `;` (default: the value).
- `predicted_values`: classifier class names, comma separated (the attribute upstream ML backends use).
`PredictParams.prompts` / `.classes` (from extra_params) override both.
"""

from __future__ import annotations

from label_studio_sdk.label_interface import LabelInterface

from backend.core.errors import BadRequest
from backend.core.ontology import SUPPORTED_CONTROLS, VIDEO_CONTROLS, Control, Ontology
from backend.core.params import PredictParams


MAX_CONFIG_CHARS = 1_000_000


def parse_label_config(xml: str, params: PredictParams | None = None) -> Ontology:
    """Parse `xml`; raise `BadRequest` if it is not valid or has no supported control on an `<Image>` or `<Video>`.

    A `<VideoRectangle>` on a `<Video>` becomes a control whose labels are its own or, as Label Studio video
    configs write them, those of the `<Labels>` controls on the same `<Video>`.
    """
    params = params or PredictParams()
    if not isinstance(xml, str) or not xml.strip():
        raise BadRequest("label config must be a non-empty XML string")
    if len(xml) > MAX_CONFIG_CHARS:
        raise BadRequest(f"label config is longer than {MAX_CONFIG_CHARS} characters")
    try:
        interface = LabelInterface(xml)
    except Exception as exc:  # the sdk raises several types for bad XML
        raise BadRequest(f"label config is not valid XML: {exc}") from None

    images = {o.name: o for o in interface.objects if o.tag == "Image"}
    videos = {o.name: o for o in interface.objects if o.tag == "Video"}
    controls: list[Control] = []
    prompts: dict[str, tuple[str, ...]] = {}
    class_names: dict[str, tuple[str, ...]] = {}
    for tag in interface.controls:
        if tag.tag not in SUPPORTED_CONTROLS:
            continue
        objects = videos if tag.tag in VIDEO_CONTROLS else images
        targets = [name for name in (tag.to_name or []) if name in objects]
        if not targets:
            continue
        target = objects[targets[0]]
        if tag.tag in VIDEO_CONTROLS and not tag.labels:
            label_tags = _video_labels(interface, target.name)
            labels = tuple(dict.fromkeys(label for t in label_tags for label in (t.labels or ())))
        else:
            label_tags, labels = [tag], tuple(tag.labels or ())
        if not labels:
            continue
        controls.append(Control(
            name=tag.name,
            tag=tag.tag,
            to_name=target.name,
            image_key=str(target.value).lstrip("$"),
            labels=labels,
            multiple=str(tag.attr.get("choice", "single")).lower() == "multiple",
            frame_rate=str(target.attr.get("framerate", "")) if tag.tag in VIDEO_CONTROLS else "",
        ))
        for label_tag in label_tags:
            for value, label in (getattr(label_tag, "labels_attrs", None) or {}).items():
                attrs = getattr(label, "attr", {}) or {}
                if attrs.get("prompt") and value not in prompts:
                    prompts[value] = _split(attrs["prompt"], ";")
                if attrs.get("predicted_values") and value not in class_names:
                    class_names[value] = _split(attrs["predicted_values"], ",")

    if not controls:
        supported = ", ".join(SUPPORTED_CONTROLS)
        raise BadRequest(f"label config has no supported control ({supported}) with labels on an <Image> "
                         "(a <VideoRectangle> on a <Video> takes its labels from a <Labels> on the same <Video>)")

    labels = dict.fromkeys(label for c in controls for label in c.labels)
    prompts = {label: prompts.get(label, (label,)) for label in labels}
    for label, values in params.prompts.items():
        if label in labels:
            prompts[label] = tuple(values)
    for label, values in params.classes.items():
        if label in labels:
            class_names[label] = tuple(values)
    return Ontology(tuple(controls), prompts, {k: v for k, v in class_names.items() if k in labels})


def _video_labels(interface: LabelInterface, video: str) -> list:
    """The `<Labels>` controls on a `<Video>`: where a `<VideoRectangle>`'s labels come from."""
    return [t for t in interface.controls if t.tag == "Labels" and video in (t.to_name or [])]


def _split(raw: str, sep: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in str(raw).split(sep) if part.strip())
