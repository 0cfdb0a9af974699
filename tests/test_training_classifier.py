"""Dataset rules of the project classifier: which annotation counts, which tasks are held out."""

import pytest

from backend.training.classifier import Example, choices_examples
from backend.training.dataset import chosen_annotation, is_held_out


def _ann(choice, **kw):
    return {"result": [{"type": "choices", "from_name": "category", "value": {"choices": [choice]}}], **kw}


@pytest.mark.parametrize("annotations,expected", [
    ([], None),
    ([_ann("cat", was_cancelled=True)], None),
    ([_ann("cat", updated_at="2026-01-01"), _ann("dog", updated_at="2026-02-01")], "dog"),
    ([_ann("cat", ground_truth=True, updated_at="2026-01-01"), _ann("dog", updated_at="2026-02-01")], "cat"),
    ([_ann("cat", updated_at="2026-03-01", was_cancelled=True), _ann("dog", updated_at="2026-02-01")], "dog"),
])
def test_chosen_annotation(annotations, expected):
    chosen = chosen_annotation({"annotations": annotations})
    assert (chosen["result"][0]["value"]["choices"][0] if chosen else None) == expected


def test_choices_examples_skip_unusable_tasks():
    tasks = [
        {"id": 1, "data": {"image": "/a.png"}, "annotations": [_ann("cat")]},
        {"id": 2, "data": {}, "annotations": [_ann("cat")]},  # no image
        {"id": 3, "data": {"image": "/c.png"}, "annotations": [{"result": [
            {"type": "choices", "from_name": "category", "value": {"choices": ["cat", "dog"]}}]}]},  # two choices
        {"id": 4, "data": {"image": "/d.png"}, "annotations": [{"result": [
            {"type": "rectanglelabels", "value": {}}]}]},  # no choice
        {"id": 5, "data": {"image": "/e.png"}, "annotations": [_ann("dog")]},
    ]
    assert choices_examples(tasks, "image") == [Example(1, "/a.png", "cat"), Example(5, "/e.png", "dog")]
    assert choices_examples(tasks, "image", control="other") == []


def test_held_out_split_is_stable_and_about_a_fifth():
    first = [is_held_out(i) for i in range(1000)]
    assert first == [is_held_out(i) for i in range(1000)]
    assert 150 < sum(first) < 250
