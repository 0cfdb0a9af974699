"""The review page: well-formed, self-contained (inline SVG plots, no external URL but the task links), numbers in
data attributes equal to the report, user text escaped, unique ids."""

import re
from datetime import datetime, timedelta, timezone
from html.parser import HTMLParser

import pytest

from backend.review.html import render_html
from backend.review.report import build_report
from tests.review_fixtures import colour_features, photo_project

NOW = datetime(2026, 3, 4, 8, 30, tzinfo=timezone.utc)
LS = "http://ls.example:8080"
VOID = {"meta", "br", "img", "input", "link", "hr", "col", "source", "wbr", "area", "base", "embed", "track"}
PLOTS = ["plot-labels", "plot-days", "plot-box-size", "plot-aspect", "plot-acceptance", "plot-versions",
         "plot-routing", "plot-embedding"]


class Page(HTMLParser):
    """Checks nesting (every element closed in order; SVG self-closing tags allowed) and collects elements."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack, self.elements, self.errors = [], [], []

    def handle_starttag(self, tag, attrs):
        element = {"tag": tag, "attrs": dict(attrs), "parents": [e["tag"] for e in self.stack], "text": ""}
        self.elements.append(element)
        if tag not in VOID:
            self.stack.append(element)

    def handle_startendtag(self, tag, attrs):
        self.elements.append({"tag": tag, "attrs": dict(attrs), "parents": [e["tag"] for e in self.stack], "text": ""})

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1]["tag"] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1]['tag'] if self.stack else 'nothing'}")
            return
        self.stack.pop()

    def handle_data(self, data):
        if self.stack:
            self.stack[-1]["text"] += data

    def find(self, **attrs):
        return [e for e in self.elements if all(e["attrs"].get(k) == v for k, v in attrs.items())]


@pytest.fixture(scope="module")
def page():
    export, ontology, load = photo_project()
    report = build_report(export, ontology, LS, 5, load_image=load, features=colour_features, now=NOW)
    text = render_html(report, now=NOW + timedelta(minutes=5))
    parser = Page()
    parser.feed(text)
    parser.close()
    return report, text, parser


def test_well_formed_with_unique_ids(page):
    _, text, parsed = page
    assert text.startswith("<!DOCTYPE html>") and parsed.errors == [] and parsed.stack == []
    ids = [e["attrs"]["id"] for e in parsed.elements if "id" in e["attrs"]]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("plot", PLOTS)
def test_every_plot_is_an_inline_svg(page, plot):
    _, _, parsed = page
    (figure,) = parsed.find(id=plot)
    svgs = [e for e in parsed.elements if e["tag"] == "svg" and e["attrs"].get("data-plot") == plot]
    assert figure["tag"] == "figure" and len(svgs) == 1 and "figure" in svgs[0]["parents"]


def test_no_external_reference_but_task_links(page):
    _, text, parsed = page
    task_links = re.escape(f"{LS}/projects/5/data?task=")
    for match in re.finditer(r"https?:|//", text):
        assert re.match(task_links + r"\d+", text[match.start() - (5 if match.group() == "//" else 0):]), \
            text[match.start() - 40:match.start() + 60]
    assert not [e for e in parsed.elements if "src" in e["attrs"]]
    assert not [e for e in parsed.elements if e["tag"] in ("link", "iframe", "img", "object", "embed")]
    assert "@import" not in text and "url(http" not in text


def test_summary_numbers_match_the_report(page):
    report, _, parsed = page
    shown = {e["attrs"]["data-key"]: e["attrs"]["data-value"] for e in parsed.elements
             if e["tag"] == "dd" and "data-key" in e["attrs"]}
    for key, value in report["counts"].items():
        assert shown[key] == str(value)
    assert float(shown["precision"]) == report["acceptance"]["overall"]["precision"]
    assert float(shown["recall"]) == report["acceptance"]["overall"]["recall"]


def _rows(parsed, table_id):
    rows, current, inside = [], None, False
    for e in parsed.elements:
        if e["tag"] == "table":
            inside = e["attrs"].get("id") == table_id
        elif inside and e["tag"] == "tr" and "tbody" in e["parents"]:
            current = {"attrs": e["attrs"], "cells": {}, "links": []}
            rows.append(current)
        elif inside and current is not None and e["tag"] == "td" and "data-key" in e["attrs"]:
            current["cells"][e["attrs"]["data-key"]] = e["attrs"]["data-value"]
        elif inside and current is not None and e["tag"] == "a":
            current["links"].append(e["attrs"])
    return rows


def test_tables_carry_the_report_numbers(page):
    report, _, parsed = page
    labels = _rows(parsed, "labels-table")
    assert [(r["attrs"]["data-label"], int(r["cells"]["regions"])) for r in labels] == \
        [(r["label"], r["regions"]) for r in report["statistics"]["labels"]]
    versions = _rows(parsed, "acceptance-versions")
    assert [(r["attrs"]["data-model-version"], float(r["cells"]["precision"])) for r in versions] == \
        [(v["model_version"], v["precision"]) for v in report["acceptance"]["by_model_version"]]
    routing = _rows(parsed, "routing-table")
    assert [float(r["cells"]["share_above"]) for r in routing] == [p["share_above"] for p in report["routing"]["points"]]
    hybrid = _rows(parsed, "hybrid-table")
    assert [int(r["cells"]["waiting_above"]) for r in hybrid] == \
        [p["waiting_above"] for p in report["routing"]["hybrid"]["points"]]


def test_suspicious_rows_link_to_their_tasks(page):
    report, _, parsed = page
    rows = _rows(parsed, "suspicious-table")
    entries = report["suspicious"]["entries"]
    assert len(rows) == len(entries) > 0
    for row, entry in zip(rows, entries):
        assert row["attrs"]["data-task-id"] == str(entry["task_id"]) and float(row["cells"]["score"]) == entry["score"]
        (link,) = row["links"]
        assert link["href"] == f"{LS}/projects/5/data?task={entry['task_id']}" and link["class"] == "task-link"
        assert link["data-task-id"] == str(entry["task_id"])


def test_age_refresh_and_escaping(page):
    report, text, parsed = page
    (age,) = parsed.find(id="report-age")
    assert age["attrs"]["data-generated-at"] == report["generated_at"] and age["text"] == "computed 5 min ago"
    (button,) = parsed.find(id="refresh")
    assert button["attrs"]["data-refresh-url"] == "/review/refresh?project=5"
    assert button["attrs"]["data-json-url"] == "/review.json?project=5"
    assert "method:'POST'" in text
    assert '<b>&"odd' not in text and "&lt;b&gt;&amp;&quot;odd" in text  # the odd label of the config, escaped


def test_skipped_embedding_says_why():
    export, ontology, _ = photo_project(6)
    text = render_html(build_report(export, ontology, LS, 5, now=NOW), now=NOW)
    parser = Page()
    parser.feed(text)
    (note,) = parser.find(id="embedding-skipped")
    assert "image loader" in note["text"] and not parser.find(id="plot-embedding")


@pytest.mark.parametrize("prelabelling, missing, predicted, status", [
    ({"coverage": {"model_version": "lime-efficientnet-lite0", "predicted": {"cat": "classifier classes tabby"},
                   "missing": {"person": 'no class matches it: <Label predicted_values="…">'}},
      "last_predict": {"job": 3, "status": "done", "message": "6 tasks predicted"}}, ["person"], ["cat"], "done"),
    ({"coverage": {"model_version": "lime-efficientnet-lite0", "predicted": {},
                   "missing": {"pothole": "no class matches it"}},
      "last_predict": {"job": 4, "status": "failed", "message": "no label can be pre-labelled"}}, ["pothole"], [],
     "failed"),
    ({"coverage": {}, "last_predict": None}, [], [], None),
])
def test_prelabelling_section_names_labels_without_pre_labels_and_the_last_job(prelabelling, missing, predicted,
                                                                               status):
    export, ontology, load = photo_project()
    report = build_report(export, ontology, LS, 5, load_image=load, features=colour_features, now=NOW)
    parsed = Page()
    parsed.feed(render_html({**report, "prelabelling": prelabelling}, now=NOW))
    assert parsed.errors == [] and len(parsed.find(id="prelabelling")) == 1
    rows = {table: [e["attrs"]["data-label"] for e in _table_rows(parsed, table)]
            for table in ("coverage-missing", "coverage-predicted")}
    assert rows["coverage-missing"] == missing and rows["coverage-predicted"] == predicted
    if status:
        (last,) = parsed.find(id="last-predict")
        assert last["attrs"]["data-status"] == status
    text = render_html({**report, "prelabelling": prelabelling}, now=NOW)
    if "person" in missing:  # the fix's markup is shown as text, never parsed
        assert '&lt;Label predicted_values=&quot;…&quot;&gt;' in text and '<Label predicted_values' not in text


def _table_rows(parsed, table_id):
    """The body rows (`<tr data-label>`) of table `table_id`, in order."""
    inside, rows = False, []
    for e in parsed.elements:
        if e["tag"] == "table":
            inside = e["attrs"].get("id") == table_id
        elif inside and e["tag"] == "tr" and "data-label" in e["attrs"]:
            rows.append(e)
    return rows


@pytest.mark.parametrize("order, score, learned, says", [
    ({"review_score": "errors", "calibrated": True,
      "region_model": {"score": "learned", "tasks": 48, "spearman_learned": 0.41, "spearman_default": 0.3,
                       "reason": "…"}},
     "learned", "0.41", "learned region model, fitted on 48 reviewed tasks"),
    ({"review_score": "errors", "calibrated": False,  # chosen, but its calibration could not be stored
      "region_model": {"score": "learned", "tasks": 48, "spearman_learned": 0.41, "spearman_default": 0.3,
                       "reason": "…"}},
     "default", "0.41", "the corrections the image and its mirror leave expected"),
    ({"review_score": "confidence", "calibrated": False, "region_model": None}, "default", "",
     "the region confidences"),
    ({"review_score": "errors", "region_model": {"score": "default", "tasks": 12, "spearman_learned": None,
                                                 "spearman_default": None,
                                                 "reason": "12 reviewed tasks with both views recorded; a region "
                                                           "model needs 20"}},
     "default", "", "a region model needs 20"),
    (None, "default", "", "no reviewed task has been fitted on yet"),
    ({"review_score": "errors", "calibrated": True, "region_model": {"score": "default", "reason": "no better"},
      "count_model": {"score": "count", "tasks": 40, "spearman_count": 0.62, "spearman_default": 0.31,
                      "reason": "…"}},
     "default", "", "its count model (fitted on 40 reviewed tasks"),
    ({"review_score": "errors", "calibrated": True, "region_model": {"score": "default", "reason": "no better"},
      "count_model": {"score": "default", "tasks": 9, "reason": "9 reviewed tasks with an embedding recorded; a "
                                                                "count model needs 20"}},
     "default", "", "No count model (9 reviewed tasks"),
    ({"review_score": "errors", "calibrated": True, "probability": False,  # every reviewed task was corrected
      "reason": "all 94 reviewed tasks were corrected; calibration needs both outcomes: the model's score orders the "
                "tasks but is no probability of acceptance",
      "region_model": {"score": "default", "reason": "no better"},
      "count_model": {"score": "count", "tasks": 94, "spearman_count": 0.62, "spearman_default": 0.31,
                      "reason": "…"}},
     "default", "", "are no probability of acceptance (all 94 reviewed tasks were corrected"),
    ({"review_score": "errors", "calibrated": True, "probability": True, "region_model": {"score": "default"}},
     "default", "", "the probability that the pre-label is accepted unchanged"),
    ({"review_score": "errors", "calibrated": True, "region_model": {"score": "default", "reason": "no better"},
      "rate_mix": {"score": "mixed", "k": 10.0, "tasks": 73, "spearman_mixed": 0.36, "spearman_default": 0.25,
                   "errors_found_mixed": 0.512, "errors_found_default": 0.518, "reason": "…"}},
     "default", "", "the rate mix (k 10) weighs the expected corrections by their share of each task's regions"),
    ({"review_score": "errors", "calibrated": True, "region_model": {"score": "default", "reason": "no better"},
      "rate_mix": {"score": "mixed", "k": 10.0, "tasks": 73, "spearman_mixed": 0.36, "spearman_default": 0.25,
                   "errors_found_mixed": 0.512, "errors_found_default": 0.518, "reason": "…"}},
     "default", "", "its lowest 30 % holding 51.2 % of their corrections (51.8 % without it)"),
    ({"review_score": "errors", "calibrated": True, "region_model": {"score": "default", "reason": "no better"},
      "rate_mix": {"score": "default", "k": None, "tasks": 73, "reason": "every mix puts fewer of the reviewed "
                                                                         "tasks' corrections in their lowest 30%"}},
     "default", "", "No rate mix (every mix puts fewer"),
])
def test_review_order_says_which_score_orders_the_predictions(order, score, learned, says):
    export, ontology, load = photo_project()
    report = build_report(export, ontology, LS, 5, load_image=load, features=colour_features, now=NOW)
    parsed = Page()
    parsed.feed(render_html({**report, "review_order": order}, now=NOW))
    (element,) = parsed.find(id="review-order")
    assert parsed.errors == [] and element["attrs"]["data-score"] == score
    assert element["attrs"]["data-spearman-learned"] == learned and says in element["text"]
    counted = (order or {}).get("count_model", {}).get("score") == "count"
    assert element["attrs"]["data-count-model"] == ("yes" if counted else "no")
    assert element["attrs"]["data-spearman-count"] == ("0.62" if counted else "")
    mixed = (order or {}).get("rate_mix", {}).get("score") == "mixed"
    assert element["attrs"]["data-rate-mix"] == ("10.0" if mixed else "no")
    assert element["attrs"]["data-spearman-mixed"] == ("0.36" if mixed else "")
    fitted = (order or {}).get("probability", (order or {}).get("calibrated"))  # older reports: fitted when calibrated
    assert element["attrs"]["data-probability"] == ("yes" if fitted else "no")
    assert ("no probability of acceptance" in element["text"]) == bool((order or {}).get("calibrated") and not fitted)


@pytest.mark.parametrize("drawing,seconds,outside,says", [
    ({"seconds_per_box": 24.8, "low": 23.1, "high": 26.0, "per_task_s": 4.2, "n_annotations": 40, "configured_s": 7.0,
      "outside": True, "reason": None}, "24.8", "yes", '"train_draw_seconds": 24.8'),
    ({"seconds_per_box": 7.4, "low": 6.1, "high": 8.0, "per_task_s": 3.0, "n_annotations": 40, "configured_s": 7.0,
      "outside": False, "reason": None}, "7.4", "no", "fitted for 7 s a box"),
    ({"seconds_per_box": None, "low": None, "high": None, "per_task_s": None, "n_annotations": 3, "configured_s": 7.0,
      "outside": False, "reason": "3 annotations with a lead time; a drawing time needs 8"}, "", "no",
     "not measured yet (3 annotations"),
    ({"seconds_per_box": 24.8, "low": 23.1, "high": 26.0, "per_task_s": 4.2, "n_annotations": 40, "configured_s": 0,
      "outside": False, "reason": None, "applied_s": 24.8, "applied_from": "measured"}, "24.8", "no",
     "fitted for this measured 24.8 s a box (train_draw_seconds 0)"),
    ({"seconds_per_box": 24.8, "low": 9.0, "high": 40.0, "per_task_s": 4.2, "n_annotations": 9, "configured_s": 0,
      "outside": False, "reason": None, "applied_s": 7.0, "applied_from": "default"}, "24.8", "no",
     "fitted for 7 s a box until a measurement is narrow enough"),
])
def test_drawing_time_is_stated_beside_the_projects_setting(drawing, seconds, outside, says):
    export, ontology, load = photo_project()
    report = build_report(export, ontology, LS, 5, now=NOW, draw_seconds=7.0)
    assert report["acceptance"]["drawing_time"]["configured_s"] == 7.0  # computed by the report builder
    parsed = Page()
    parsed.feed(render_html({**report, "acceptance": {**report["acceptance"], "drawing_time": drawing}}, now=NOW))
    (element,) = parsed.find(id="drawing-time")
    assert parsed.errors == [] and element["attrs"]["data-seconds"] == seconds
    assert element["attrs"]["data-outside"] == outside and says in element["text"]
    assert ('"train_draw_seconds"' in element["text"]) == (outside == "yes")
    assert element["attrs"]["data-applied"] == ("" if "applied_s" not in drawing else str(drawing['applied_s']))
