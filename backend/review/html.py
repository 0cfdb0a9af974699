"""The review page: one self-contained HTML document from a review report (`backend.review.report`).

No CDN, no external file: plots are inline SVG rendered server-side (`backend.review.plots`), styles and the few
lines of JavaScript are inline. The only absolute URLs are the links to tasks in Label Studio.

For browser tests every number shown sits in an element with `data-key` and `data-value` (the raw JSON value;
"" for null) inside a container with a stable id:
- `#summary [data-key]`: the report's `counts`, plus `precision`, `recall` (acceptance overall) and
  `suggested_threshold` (routing);
- tables `#labels-table`, `#annotators-table`, `#acceptance-labels`, `#acceptance-versions`, `#suspicious-table`,
  `#embedding-flagged`, `#routing-table`, `#hybrid-table`: one `<tr>` per row with `data-label` / `data-annotator` /
  `data-model-version` / `data-task-id` / `data-threshold`, cells `<td data-key=… data-value=…>`;
  clicking a header sorts by that column;
- `#review-order[data-score][data-spearman-learned][data-spearman-default][data-count-model][data-probability]`:
  which score orders the predictions (the default or the project's learned models, `backend.jobs.calibration`), why,
  and whether the scores are probabilities of acceptance ("yes") or only an order ("no");
- `#hybrid-statement[data-threshold][data-threshold-from][data-needs-correction][data-waiting-above]`: hybrid
  routing stated at the project's `accept_threshold` (or the suggested one);
- `#drawing-time[data-seconds][data-configured][data-outside][data-applied]`: the seconds a box takes the annotators
  by their lead times (`backend.review.drawing`), the project's `train_draw_seconds` and the seconds the next
  version's cuts are fitted for;
- `#callouts li[data-kind][data-label]`; plots `figure#plot-<name> > svg[data-plot]`;
- `#prelabelling` (when the report has "prelabelling"): `#coverage-missing tr[data-label]` (labels the serving
  pipeline cannot pre-label, with the fix), `#coverage-predicted tr[data-label]`, `#last-predict[data-status]`;
- suspicious and flagged regions link to their task with `a.task-link[data-task-id]`;
- `#report-age[data-generated-at]` (updated every 30 s in the browser; `page_for_now` updates a cached page's
  text on the server), `#computed-in[data-value]` (seconds the review job took, when the report says), `button#refresh` POSTs to
  `data-refresh-url` (default `/review/refresh?project=N`), then polls `data-json-url` (default
  `/review.json?project=N`) every 2 s until its `generated_at` changes (2 minutes at most) and reloads.
"""

from __future__ import annotations

import html
import json
import re
from datetime import datetime, timezone

from backend.review import plots

STYLE = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:0 auto;max-width:1100px;padding:1rem 1.5rem;
color:#222}
header{display:flex;flex-wrap:wrap;align-items:baseline;gap:1rem;border-bottom:1px solid #ddd;padding-bottom:.5rem}
h1{font-size:1.4rem;margin:0}h2{margin-top:2rem;border-bottom:1px solid #eee}h3{font-size:1rem}
#summary{display:grid;grid-template-columns:repeat(auto-fill,minmax(10rem,1fr));gap:.5rem;margin:1rem 0}
#summary div{background:#f5f5f7;border-radius:6px;padding:.4rem .6rem}#summary dt{font-size:.75rem;color:#555}
#summary dd{margin:0;font-size:1.2rem;font-weight:600}
table{border-collapse:collapse;font-size:.85rem;margin:.5rem 0}th,td{padding:.2rem .5rem;border-bottom:1px solid #eee;
text-align:right}th{cursor:pointer;background:#fafafa;user-select:none}th[data-order=asc]::after{content:' \\25B2'}
th[data-order=desc]::after{content:' \\25BC'}td.text,th.text{text-align:left}
.scroll{max-height:28rem;overflow:auto}figure{margin:.5rem 0}figure svg{max-width:100%;height:auto}
figure svg *{stroke-linejoin:round;stroke-linecap:butt}.note{color:#555;font-size:.85rem}
.callouts li[data-kind=rare],.callouts li[data-kind=unknown]{color:#b26a00}
.callouts li[data-kind=lopsided]{color:#6a1b9a}button{font-size:.9rem}
"""

SCRIPT = """
(function(){
function fmt(s){if(s<90)return Math.round(s)+' s';if(s<5400)return Math.round(s/60)+' min';
if(s<172800)return Math.round(s/3600)+' h';return Math.round(s/86400)+' days';}
var age=document.getElementById('report-age');
function tick(){var t=Date.parse(age.dataset.generatedAt);if(!isNaN(t)){
age.textContent='computed '+fmt(Math.max(0,(Date.now()-t)/1000))+' ago';}}
tick();setInterval(tick,30000);
function key(cell){var v=cell.dataset.value;if(v===undefined)v=cell.textContent.trim();
if(v==='')return [0,0];var n=Number(v);return isNaN(n)?[2,v.toLowerCase()]:[1,n];}
document.querySelectorAll('table.sortable').forEach(function(table){
table.querySelectorAll('thead th').forEach(function(th,i){th.addEventListener('click',function(){
var asc=th.dataset.order!=='asc';table.querySelectorAll('thead th').forEach(function(h){delete h.dataset.order;});
th.dataset.order=asc?'asc':'desc';var body=table.tBodies[0];var rows=Array.prototype.slice.call(body.rows);
rows.sort(function(a,b){var x=key(a.cells[i]),y=key(b.cells[i]);var c=x[0]-y[0];
if(c===0)c=x[1]<y[1]?-1:(x[1]>y[1]?1:0);return asc?c:-c;});
rows.forEach(function(r){body.appendChild(r);});});});});
var button=document.getElementById('refresh'),status=document.getElementById('refresh-status');
function poll(n){fetch(button.dataset.jsonUrl,{cache:'no-store'}).then(function(r){return r.json();})
.then(function(d){if(d.generated_at!==age.dataset.generatedAt||n>=60){location.reload();}
else{setTimeout(function(){poll(n+1);},2000);}})
.catch(function(){if(n>=60){location.reload();}else{setTimeout(function(){poll(n+1);},2000);}});}
button.addEventListener('click',function(){button.disabled=true;status.textContent='refreshing...';
fetch(button.dataset.refreshUrl,{method:'POST'}).then(function(r){
if(!r.ok){throw new Error('HTTP '+r.status);}poll(0);})
.catch(function(e){status.textContent='refresh failed: '+e.message;button.disabled=false;});});
})();
"""


def _e(value) -> str:
    return html.escape(str(value), quote=True)


def _raw(value) -> str:
    """The data-value of a JSON value: "" for None, JSON for lists/dicts, str() otherwise."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return str(value)


def _shown(value, percent: bool = False) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.1%}" if percent else f"{value:.4g}"
    if isinstance(value, dict):
        return ", ".join(f"{k}: {v}" for k, v in value.items())
    return str(value)


def _cell(key: str, value, percent: bool = False, text: bool = False) -> str:
    cls = ' class="text"' if text else ""
    return f'<td{cls} data-key="{_e(key)}" data-value="{_e(_raw(value))}">{_e(_shown(value, percent))}</td>'


def _table(table_id: str, columns: list[tuple[str, str, str]], rows: list[dict], row_attr: str | None = None,
           extra=None) -> str:
    """columns: (key, header, format) with format "", "percent" or "text". extra(row) → extra cells HTML."""
    head = "".join(f'<th class="{"text" if f == "text" else ""}" data-key="{_e(k)}">{_e(h)}</th>'
                   for k, h, f in columns)
    if extra:
        head += "<th class=\"text\">task</th>"
    body = []
    for row in rows:
        attr = f' data-{row_attr.replace("_", "-")}="{_e(_raw(row.get(row_attr)))}"' if row_attr else ""
        cells = "".join(_cell(k, row.get(k), f == "percent", f == "text") for k, _, f in columns)
        body.append(f"<tr{attr}>{cells}{extra(row) if extra else ''}</tr>")
    return (f'<div class="scroll"><table id="{_e(table_id)}" class="sortable"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table></div>')


def _figure(name: str, svg: str) -> str:
    return f'<figure id="{name}">{svg}</figure>' if svg else ""


def _link(row: dict) -> str:
    link = row.get("link")
    if not link:
        return "<td></td>"
    return (f'<td class="text"><a class="task-link" data-task-id="{_e(row["task_id"])}" href="{_e(link)}" '
            f'target="_blank" rel="noopener">task {_e(row["task_id"])}</a></td>')


def _age(generated_at: str, now: datetime) -> str:
    try:
        seconds = max(0.0, (now - datetime.fromisoformat(generated_at)).total_seconds())
    except ValueError:
        return ""
    for limit, unit, size in ((90, "s", 1), (5400, "min", 60), (172800, "h", 3600)):
        if seconds < limit:
            return f"computed {round(seconds / size)} {unit} ago"
    return f"computed {round(seconds / 86400)} days ago"


def render_html(report: dict, *, now: datetime | None = None, refresh_url: str | None = None,
                json_url: str | None = None) -> str:
    """The page for `report` (a dict from `build_report`). URLs default to `/review/refresh?project=N` (POST) and
    `/review.json?project=N` (pass others when the service is mounted under a prefix). `now` fixes the age shown
    before JavaScript runs."""
    project = report["project"]
    now = now or datetime.now(timezone.utc)
    refresh_url = refresh_url or f"/review/refresh?project={project}"
    json_url = json_url or f"/review.json?project={project}"
    stats, acc, sus, emb, routing = (report["statistics"], report["acceptance"], report["suspicious"],
                                     report["embedding"], report["routing"])
    colours = plots.label_colours([r["label"] for r in stats["labels"]])
    parts = [f'<header><h1>Review of project {_e(project)}</h1>'
             f'<span id="report-age" data-generated-at="{_e(report["generated_at"])}">'
             f'{_e(_age(report["generated_at"], now))}</span>'
             f'<span class="note">generated {_e(report["generated_at"])}'
             + (f' in <span id="computed-in" data-value="{_e(report["computed_in_s"])}">{_e(report["computed_in_s"])}'
                f'</span> s' if report.get("computed_in_s") is not None else "") + '</span>'
             f'<button id="refresh" type="button" data-refresh-url="{_e(refresh_url)}" data-json-url="{_e(json_url)}">'
             f'Refresh</button><span id="refresh-status" class="note"></span></header>']
    summary = {**report["counts"], "precision": acc["overall"]["precision"], "recall": acc["overall"]["recall"],
               "suggested_threshold": routing["suggested_threshold"]}
    titles = {"tasks": "tasks", "annotated_tasks": "annotated tasks", "annotations": "annotations",
              "cancelled_annotations": "skipped", "predictions": "predictions",
              "tasks_with_predictions": "tasks with predictions", "regions": "regions",
              "suspicious": "suspicious entries", "flagged_regions": "flagged in the map",
              "precision": "pre-label precision", "recall": "pre-label recall",
              "suggested_threshold": "auto-accept from score"}
    parts.append('<dl id="summary">' + "".join(
        f'<div><dt>{_e(titles.get(k, k))}</dt><dd data-key="{_e(k)}" data-value="{_e(_raw(v))}">'
        f'{_e(_shown(v, k in ("precision", "recall")))}</dd></div>' for k, v in summary.items()) + "</dl>")

    if report.get("prelabelling"):
        parts.append(_prelabelling(report["prelabelling"]))

    # label statistics
    parts.append('<section id="statistics"><h2>Label statistics</h2>')
    parts.append('<ul id="callouts" class="callouts">' + "".join(
        f'<li data-kind="{_e(c["kind"])}" data-label="{_e(c["label"])}">{_e(c["text"])}</li>' for c in stats["callouts"])
        + "</ul>")
    parts.append(_figure("plot-labels", plots.labels_plot(stats, colours)))
    parts.append(_table("labels-table", [("label", "label", "text"), ("regions", "regions", ""),
                                         ("tasks", "tasks", ""), ("share", "share", "percent"),
                                         ("in_config", "in config", "")], stats["labels"], "label"))
    parts.append("<h3>Annotators</h3>" + _table(
        "annotators-table", [("annotator", "annotator", "text"), ("annotations", "annotations", ""),
                             ("tasks", "tasks", ""), ("regions", "regions", ""), ("cancelled", "skipped", ""),
                             ("mean_lead_time_s", "mean time (s)", ""), ("median_lead_time_s", "median time (s)", ""),
                             ("by_label", "regions per label", "text")], stats["annotators"], "annotator"))
    parts.append(_figure("plot-days", plots.days_plot(stats)))
    parts.append(_figure("plot-box-size", plots.histogram_plot(stats["box_size"], "Box size", "plot-box-size", colours,
                                                               log_x=True)))
    parts.append(_figure("plot-aspect", plots.histogram_plot(stats["aspect"], "Box aspect (0 = square)", "plot-aspect",
                                                             colours)))
    parts.append("</section>")

    # pre-label acceptance
    th = acc["thresholds"]
    parts.append(f'<section id="acceptance"><h2>Pre-label acceptance</h2><p class="note">{_e(acc["n_tasks"])} annotated '
                 f'tasks that had a prediction ({_e(acc["n_annotated_without_prelabel"])} annotated without one). '
                 f'Accepted: same label, IoU &ge; {_e(th["unchanged_iou"])}; adjusted: same label, IoU &ge; '
                 f'{_e(th["match_iou"])}; relabelled: IoU &ge; {_e(th["match_iou"])} with another label; deleted: '
                 f'prediction region left out; added: drawn by hand. Precision = (accepted + adjusted) / predicted, '
                 f'recall = (accepted + adjusted) / annotated.</p>')
    parts.append(_figure("plot-acceptance", plots.acceptance_plot(acc)))
    count_cols = [("predicted", "predicted", ""), ("annotated", "annotated", ""), ("accepted", "accepted", ""),
                  ("adjusted", "adjusted", ""), ("relabelled", "relabelled", ""), ("deleted", "deleted", ""),
                  ("added", "added", ""), ("precision", "precision", "percent"), ("recall", "recall", "percent"),
                  ("unchanged", "unchanged", "percent")]
    label_rows = [{"label": k, **v} for k, v in acc["by_label"].items()]
    parts.append(_table("acceptance-labels", [("label", "label", "text")] + count_cols, label_rows, "label"))
    parts.append(_figure("plot-versions", plots.versions_plot(acc)))
    parts.append("<h3>Per model version</h3>" + _table(
        "acceptance-versions", [("model_version", "model version", "text"), ("tasks", "tasks", "")] + count_cols +
        [("precision_change", "precision change", ""), ("recall_change", "recall change", ""),
         ("mean_lead_time_s", "mean time (s)", "")], acc["by_model_version"], "model_version"))
    parts.append(_drawing_time(acc.get("drawing_time")))
    parts.append("</section>")

    # suspicious annotations
    entries = sus["entries"]
    parts.append(f'<section id="suspicious"><h2>Suspicious annotations</h2><p class="note">{_e(sus["n_entries"])} '
                 f'entries on {_e(sus["n_tasks_checked"])} tasks ({_e(sus["n_tasks_out_of_sample"])} compared with a '
                 f'prediction made without training on them), the first {len(entries)} shown, most suspicious first. '
                 f'Kinds: {_e(_shown(sus["by_kind"]))}.</p>')
    sus_rows = [{**e, "region_xyxy": e["region"]["xyxy"]} for e in entries]
    parts.append(_table("suspicious-table", [("rank", "#", ""), ("score", "score", ""), ("kind", "kind", "text"),
                                             ("label", "label", "text"), ("predicted_label", "model says", "text"),
                                             ("prediction_score", "model score", ""), ("iou", "IoU", ""),
                                             ("reason", "why", "text"), ("region_xyxy", "region (px)", "text")],
                        sus_rows, "task_id", extra=_link))
    parts.append("</section>")

    # embedding map
    parts.append('<section id="embedding"><h2>Embedding map</h2>')
    if "skipped" in emb:
        parts.append(f'<p id="embedding-skipped" class="note">Skipped: {_e(emb["skipped"])}</p>')
    else:
        parts.append(f'<p class="note">{_e(emb["n_embedded"])} of {_e(emb["n_regions"])} annotated regions embedded '
                     f'(at most {_e(emb["max_regions"])}), {_e(emb["method"].upper())}; flagged when more than '
                     f'{_e(round(emb["flag_share"] * 100))} % of the {_e(emb["k"])} nearest regions carry another '
                     f'label.</p>')
        parts.append(_figure("plot-embedding", plots.embedding_plot(emb, colours)))
        flagged = sorted((p for p in emb["points"] if p["flagged"]), key=lambda p: -p["disagreement"])
        parts.append(_table("embedding-flagged", [("label", "label", "text"),
                                                  ("neighbour_label", "neighbours say", "text"),
                                                  ("disagreement", "share of neighbours", "percent"),
                                                  ("xyxy", "region (px)", "text")], flagged, "task_id", extra=_link))
    parts.append("</section>")

    # routing
    parts.append(f'<section id="routing"><h2>Routing</h2><p class="note">{_e(routing["n_tasks"])} tasks with a '
                 f'prediction and a submitted annotation. Filter the Data Manager by prediction score &ge; a threshold '
                 f'and use "Create Annotations From Predictions" on those tasks; the rest go to annotators.</p>')
    parts.append(_review_order(report.get("review_order")))
    parts.append(_figure("plot-routing", plots.routing_plot(routing)))
    parts.append(_table("routing-table", [("threshold", "score threshold", ""), ("tasks_above", "tasks above", ""),
                                          ("share_above", "share above", "percent"), ("f1_above", "F1 above", ""),
                                          ("unchanged_above", "unchanged above", "percent"),
                                          ("expected_f1", "project F1 if auto-accepted", "")],
                        routing["points"], "threshold"))
    hybrid = routing.get("hybrid")
    if hybrid:
        at = hybrid["at_threshold"] or {}
        parts.append(f'<h3>Hybrid routing</h3><p id="hybrid-statement" data-threshold="{_e(_raw(hybrid["accept_threshold"]))}" '
                     f'data-threshold-from="{_e(_raw(hybrid["threshold_from"]))}" '
                     f'data-needs-correction="{_e(_raw(at.get("needs_correction")))}" '
                     f'data-waiting-above="{_e(_raw(at.get("waiting_above")))}">'
                     + _e(hybrid["statement"] or 'Set "accept_threshold" in the project\'s extra params to see how many '
                          'waiting tasks a score threshold would accept without review.') + '</p>')
        parts.append(_table("hybrid-table", [("threshold", "score threshold", ""),
                                             ("waiting_above", "waiting tasks above", ""),
                                             ("share_waiting_above", "share of waiting", "percent"),
                                             ("reviewed_above", "reviewed above", ""),
                                             ("needs_correction", "needed a correction", "percent"),
                                             ("needs_correction_low", "95 % low", "percent"),
                                             ("needs_correction_high", "95 % high", "percent")],
                            hybrid["points"], "threshold"))
    parts.append("</section>")
    return ('<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<title>Review of project {_e(project)}</title><style>{STYLE}</style></head><body>'
            + "".join(parts) + f"<script>{SCRIPT}</script></body></html>")


DEFAULT_SCORES = {"errors": "the corrections the image and its mirror leave expected",
                  "mirror": "the agreement of the image and its mirror",
                  "confidence": "the region confidences"}


def _drawing_time(drawing: dict | None) -> str:
    """The drawing time the annotators' lead times show (`backend.review.drawing`) beside the project's
    `train_draw_seconds`, with the setting to change when it lies outside the interval."""
    if not drawing:
        return ""
    seconds, configured = drawing["seconds_per_box"], drawing["configured_s"]
    attrs = f'data-seconds="{_e(_raw(seconds))}" data-configured="{_e(_raw(configured))}" ' \
            f'data-outside="{"yes" if drawing["outside"] else "no"}" ' \
            f'data-applied="{_e(_raw(drawing.get("applied_s")))}"'
    if seconds is None:
        text = f"Drawing time per box: not measured yet ({drawing['reason']})."
    else:
        text = (f"Drawing one box takes these annotators about {seconds:g} s (95 % interval {drawing['low']:g}–"
                f"{drawing['high']:g} s, and {drawing['per_task_s']:g} s a task besides its boxes), from Label "
                f"Studio's lead times of {drawing['n_annotations']} annotations.")
    applied_from = drawing.get("applied_from")
    if applied_from == "measured":
        text += (f" The next version's score cuts are fitted for this measured {drawing['applied_s']:g} s a box "
                 "(train_draw_seconds 0).")
    elif applied_from == "default":
        text += (f" The next version's score cuts are fitted for {drawing['applied_s']:g} s a box until a measurement "
                 "is narrow enough (its 95 % interval no wider than half of it; train_draw_seconds 0).")
    elif configured is not None:
        text += f" Each version's score cuts are fitted for {configured:g} s a box (train_draw_seconds)."
    if drawing["outside"]:
        text += (f' That is outside the interval: set "train_draw_seconds": {seconds:g} in the project\'s extra '
                 "params (or 0 to follow the measurement), and the next version shows the boxes worth showing at that "
                 "speed.")
    return f'<h3>Drawing time</h3><p id="drawing-time" {attrs}>{_e(text)}</p>'


def _review_order(order: dict | None) -> str:
    """`#review-order[data-score][data-spearman-learned][data-spearman-default][data-count-model][data-spearman-count]
    [data-rate-mix][data-spearman-mixed][data-probability]`: which score orders the project's predictions (its
    `review_score` mode, or the learned region model when the calibration serving that mode holds it; the count model
    on top where it holds one; the rate mix's k, "no" without one), the evidence for it, and whether the served scores
    are probabilities of acceptance (a fitted curve) or only an order."""
    order = order or {}
    evidence = order.get("region_model") or {}
    learned, default = evidence.get("spearman_learned"), evidence.get("spearman_default")
    mode = order.get("review_score") or "errors"
    plain = f"review_score {mode!r}: {DEFAULT_SCORES.get(mode, mode)}"
    if evidence.get("score") == "learned" and order.get("calibrated"):
        score = "learned"
        text = (f"Prediction scores come from this project's learned region model, fitted on "
                f"{evidence.get('tasks')} reviewed tasks: out of fold it ranks them by pre-label F1 with Spearman "
                f"{learned} against {default} for the default score ({plain}).")
    else:
        score = "default"
        why = (f"at its last fit: {evidence['reason']}" if evidence.get("reason")
               else "no reviewed task has been fitted on yet")
        text = (f"Prediction scores use the project's review score ({plain}); no learned region model ({why}; "
                f"predict jobs refit it from the reviewed tasks).")
    counts = order.get("count_model") or {}
    counted = counts.get("score") == "count" and order.get("calibrated")
    if counted:
        text += (f" On top of that, its count model (fitted on {counts.get('tasks')} reviewed tasks whose image "
                 f"embedding was recorded) adds the objects it expects beyond the shown regions: out of fold, Spearman "
                 f"{counts.get('spearman_count')} against {counts.get('spearman_default')} without it.")
    elif counts.get("reason"):
        text += f" No count model ({counts['reason']})."
    mix = order.get("rate_mix") or {}
    mixed = mix.get("score") == "mixed" and order.get("calibrated")
    if mixed:
        text += (f" Then the rate mix (k {mix.get('k'):g}) weighs the expected corrections by their share of each "
                 f"task's regions as well, so the worst pre-labels come first, not only the busiest: on "
                 f"{mix.get('tasks')} reviewed tasks, Spearman with F1 {mix.get('spearman_mixed')} against "
                 f"{mix.get('spearman_default')} without it, its lowest 30 % holding "
                 f"{_share(mix.get('errors_found_mixed'))} of their corrections "
                 f"({_share(mix.get('errors_found_default'))} without it).")
    elif mix.get("reason"):
        text += f" No rate mix ({mix['reason']})."
    fitted = order.get("probability", order.get("calibrated"))  # a report cached before the key: fitted when calibrated
    probability = "yes" if fitted else "no"
    if order.get("calibrated") and not fitted:
        text += (f" These scores order the tasks by the corrections expected but are no probability of acceptance "
                 f"({order.get('reason') or 'the reviewed tasks hold one outcome only'}).")
    elif fitted:
        text += " Each score is the probability that the pre-label is accepted unchanged, fitted on the reviewed tasks."
    return (f'<p id="review-order" class="note" data-score="{_e(score)}" data-spearman-learned="{_e(_raw(learned))}" '
            f'data-spearman-default="{_e(_raw(default))}" data-count-model="{"yes" if counted else "no"}" '
            f'data-spearman-count="{_e(_raw(counts.get("spearman_count")))}" '
            f'data-rate-mix="{_e(_raw(mix.get("k")) if mixed else "no")}" '
            f'data-spearman-mixed="{_e(_raw(mix.get("spearman_mixed")))}" data-probability="{probability}">'
            f'{_e(text)}</p>')


def _share(value) -> str:
    """A share in [0, 1] as a percentage with one decimal ("?" when unknown)."""
    return "?" if value is None else f"{100 * float(value):.1f} %"


def _prelabelling(pre: dict) -> str:
    """Which labels are pre-labelled and how, the ones that are not with their fix, and the last predict job."""
    coverage = pre.get("coverage") or {}
    out = ['<section id="prelabelling"><h2>Pre-labelling</h2>']
    job = pre.get("last_predict")
    if job:
        out.append(f'<p id="last-predict" data-status="{_e(job["status"])}">Last pre-labelling job {_e(job["job"])}: '
                   f'<b>{_e(job["status"])}</b> {_e(job.get("message", ""))}</p>')
    if "model_version" not in coverage:
        out.append('<p class="note">Which labels can be pre-labelled is not known yet (checked after Connect and by '
                   'every pre-labelling job).</p>')
        return "".join(out) + "</section>"
    missing = [{"label": k, "fix": v} for k, v in (coverage.get("missing") or {}).items()]
    predicted = [{"label": k, "how": v} for k, v in (coverage.get("predicted") or {}).items()]
    out.append(f'<p class="note">Served by {_e(coverage["model_version"])}: {len(predicted)} labels pre-labelled, '
               f'{len(missing)} not.</p>')
    if missing:
        out.append("<h3>Not pre-labelled</h3>" + _table("coverage-missing", [("label", "label", "text"),
                                                                          ("fix", "what to do", "text")],
                                                       missing, "label"))
    out.append("<h3>Pre-labelled</h3>" + _table("coverage-predicted", [("label", "label", "text"),
                                                                      ("how", "how", "text")], predicted, "label"))
    return "".join(out) + "</section>"


_AGE_SPAN = re.compile(r'(<span id="report-age" data-generated-at="[^"]*">)[^<]*(</span>)')


def page_for_now(page: str, generated_at: str, *, now: datetime | None = None, notice: str = "") -> str:
    """A cached page (from `render_html`) made current: the age text recomputed for `now` and, when `notice` is
    given, a `<p id="review-notice">` line under the header (e.g. "a refresh is running"). String edits only:
    serving a cached page of any size costs microseconds."""
    age = _age(generated_at, now or datetime.now(timezone.utc))
    page = _AGE_SPAN.sub(lambda m: m.group(1) + _e(age) + m.group(2), page, count=1)
    if notice:
        page = page.replace("</header>", f'</header><p id="review-notice" class="note">{_e(notice)}</p>', 1)
    return page


def status_page(project: int, *, job: int | None, status: str, message: str = "", progress: dict | None = None,
                refresh_s: int = 3, refresh_url: str | None = None) -> str:
    """The small page `GET /review` answers while no report is cached: `status` "computing" (reloads itself every
    `refresh_s` seconds through `<meta http-equiv="refresh">` and shows the job's progress) or "failed" (the
    job's `message` and a button that POSTs `refresh_url` to try again). Stable hooks: `#review-status[data-status]
    [data-job]`, `#review-progress`, `button#retry`."""
    refresh_url = refresh_url or f"/review/refresh?project={project}"
    meta = f'<meta http-equiv="refresh" content="{int(refresh_s)}">' if status == "computing" else ""
    shown = ", ".join(f"{k}: {v}" for k, v in (progress or {}).items()) or "waiting for a worker"
    if status == "computing":
        body = (f'<p id="review-status" data-status="computing" data-job="{_e(job or "")}">The review of project '
                f'{_e(project)} is being computed (job {_e(job)}). This page reloads itself.</p>'
                f'<p id="review-progress" class="note">{_e(shown)}</p>')
    else:
        body = (f'<p id="review-status" data-status="{_e(status)}" data-job="{_e(job or "")}">The review job '
                f'{_e(job)} of project {_e(project)} failed: {_e(message)}</p>'
                f'<button id="retry" type="button" data-refresh-url="{_e(refresh_url)}">Try again</button>'
                "<script>document.getElementById('retry').addEventListener('click',function(e){"
                "e.target.disabled=true;fetch(e.target.dataset.refreshUrl,{method:'POST'})"
                ".then(function(){location.reload();});});</script>")
    return ('<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">' + meta +
            f'<title>Review of project {_e(project)}</title><style>{STYLE}</style></head><body>'
            f'<header><h1>Review of project {_e(project)}</h1></header>{body}</body></html>')
