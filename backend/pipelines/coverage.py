"""Which labels of a project's config the serving pipeline can pre-label, and what to do about the others.

Every pipeline answers `coverage(ontology, params) -> Coverage`: LIME and the cascade pre-label the labels some
classifier class stands for (`backend.pipelines.label_mapping.class_groups`), Grounding DINO every label (its
prompts are open-set), a trained detector the labels it was trained on (the zero-shot pipeline covers the rest).
A label no source covers is still learnt by the project's own models once annotators draw it: `with_learning`
adds that to each missing label's fix. Shown at `/setup`'s follow-ups: `/health` per project, the predict jobs'
results, the review page and the `warnings` of `/predict` answers (Label Studio's "Send Test Request").
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from backend.core.ontology import REGION_CONTROLS, Ontology

SHOWN_CLASSES = 3  # class names quoted per label in `predicted`


@dataclass(frozen=True)
class Coverage:
    """model_version: the pipeline's; predicted: {label value: how it is pre-labelled}; missing: {label value: why
    not and how to fix it}. Labels in config order."""

    model_version: str
    predicted: dict[str, str] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)

    @property
    def nothing_predicted(self) -> bool:
        return not self.predicted and bool(self.missing)

    def message(self) -> str:
        """One paragraph for an admin ("" when every label is covered)."""
        if not self.missing:
            return ""
        head = (f"no label of this config can be pre-labelled by {self.model_version} yet"
                if self.nothing_predicted else
                f"{len(self.missing)} of {len(self.missing) + len(self.predicted)} labels cannot be pre-labelled by "
                f"{self.model_version}")
        return head + ": " + "; ".join(f'"{label}": {fix}' for label, fix in self.missing.items())

    def as_dict(self) -> dict:
        return {**asdict(self), "message": self.message()}

    @classmethod
    def from_dict(cls, raw: dict | None) -> "Coverage | None":
        if not isinstance(raw, dict) or "model_version" not in raw:
            return None
        return cls(str(raw["model_version"]), dict(raw.get("predicted") or {}), dict(raw.get("missing") or {}))


def mapped_by_classes(ontology: Ontology, groups: dict[str, tuple[int, ...]], class_names: tuple[str, ...],
                      classifier: str, model_version: str) -> Coverage:
    """Coverage of a classifier-backed pipeline: a label is pre-labelled when `groups` maps it to classes."""
    predicted, missing = {}, {}
    for label in ontology.labels:
        if label in groups:
            names = [class_names[i] for i in groups[label]]
            more = f" (+{len(names) - SHOWN_CLASSES})" if len(names) > SHOWN_CLASSES else ""
            predicted[label] = f"classifier classes {', '.join(names[:SHOWN_CLASSES])}{more}"
        else:
            missing[label] = (f"no class of classifier {classifier} matches it: give the label "
                              f'predicted_values="class, class" in the label config, or extra_params '
                              f'{{"classes": {{"{label}": ["class"]}}}}, or serve PIPELINE=grounded (open-set prompts)')
    return Coverage(model_version, predicted, missing)


def with_learning(coverage: Coverage, ontology: Ontology, min_annotations: int) -> Coverage:
    """Each missing label's fix plus what the project's own models learn: region labels by the project's detector,
    Choices by its classifier, once the project has `min_annotations` annotations (train_min_annotations)."""
    tags = {label: c.tag for c in ontology.controls for label in c.labels}
    missing = {}
    for label, fix in coverage.missing.items():
        model = "detector" if tags.get(label) in REGION_CONTROLS else "classifier"
        missing[label] = (f"{fix}; or annotate it: the project's {model} learns it once the project has "
                          f"{min_annotations} annotations (train_min_annotations)")
    return Coverage(coverage.model_version, dict(coverage.predicted), missing)
