"""Frames → image tasks: every k-th frame of a local video imported into a Label Studio project.

    python -m backend.labelstudio.frames_import VIDEO --every 5 --project N [--max-frames M] [--max-seconds S]
        [--image-key image] [--video-url URL] [--format jpeg|png] [--url LABEL_STUDIO_URL] [--api-key KEY]

Each task's data: ``{<image key>: uploaded file URL, "video": source name or URL, "frame": 0-based frame index,
"time": seconds}``. The route (Label Studio 1.23, `data_import/api.py`, what its own import dialog does):
1. ``POST /api/projects/{id}/import?commit_to_project=false`` with the encoded frames as multipart files stores them
   (`FileUpload`) and returns `file_upload_ids` without creating tasks;
2. ``GET /api/projects/{id}/file-uploads?ids=[...]`` gives each upload's stored name (``upload/{project}/{uuid8}-{name}``),
   served at ``/data/`` + that name (`MEDIA_URL`; the URL Label Studio itself puts in tasks of uploaded images);
3. ``POST /api/projects/{id}/import?return_task_ids=true`` with the JSON tasks creates them.
Label Studio refuses direct file uploads into a project whose config has more than one data key (object tag).
"""

from __future__ import annotations

import argparse
import io
import json
import re
import sys
from pathlib import Path
from typing import Iterable, Iterator

import requests
from PIL import Image

from backend.core.errors import BackendError, BadRequest
from backend.labelstudio.client import LabelStudioConnection
from backend.core.tracks import VideoFrame
from backend.labelstudio.video import read_frames

MEDIA_URL = "/data/"  # Label Studio's MEDIA_URL: uploaded files are served under it
UPLOAD_BATCH = 50      # files per upload request (Django accepts 100 by default)
TASK_BATCH = 500       # tasks per JSON import request


def call_label_studio(connection: LabelStudioConnection, method: str, path: str, timeout: float = 120,
                      **kwargs) -> requests.Response:
    """The one HTTP call of this module: `method` on Label Studio's `path` through the connection (its URL parser,
    token only to Label Studio, no redirects followed); non-2xx raises `BadRequest`."""
    try:
        response = connection.request(method, path, timeout=timeout, **kwargs)
    except requests.RequestException as exc:
        raise BadRequest(f"Label Studio at {connection.base_url} is unreachable: {exc}") from None
    if not 200 <= response.status_code < 300:
        raise BadRequest(f"Label Studio answered HTTP {response.status_code} to {method} {path}: {response.text[:500]}")
    return response


def encode_frame(frame: VideoFrame, image_format: str = "jpeg", quality: int = 95) -> bytes:
    """The frame's RGB pixels as a JPEG (quality `quality`) or PNG file."""
    buffer = io.BytesIO()
    if image_format == "png":
        Image.fromarray(frame.image).save(buffer, format="PNG")
    elif image_format == "jpeg":
        Image.fromarray(frame.image).save(buffer, format="JPEG", quality=quality)
    else:
        raise ValueError(f"image_format must be 'jpeg' or 'png', got {image_format!r}")
    return buffer.getvalue()


def frame_file_name(video_name: str, frame: VideoFrame, image_format: str = "jpeg") -> str:
    """e.g. ``drive_frame000125.jpg`` for frame 125 of ``drive.mp4`` (characters Django would alter become "_")."""
    stem = re.sub(r"[^A-Za-z0-9_.-]", "_", Path(video_name).stem)
    return f"{stem}_frame{frame.index:06d}.{'jpg' if image_format == 'jpeg' else 'png'}"


def project_image_key(connection: LabelStudioConnection, project_id: int) -> str:
    """The data key of the project's first `<Image>` (`$image` → "image"); "image" when it has none."""
    from backend.labelstudio.config import parse_label_config

    config = call_label_studio(connection, "GET", f"/api/projects/{project_id}").json().get("label_config") or ""
    try:
        keys = [c.image_key for c in parse_label_config(config).controls if not c.is_video]
    except BadRequest:
        keys = []
    return keys[0] if keys else "image"


def import_frames(connection: LabelStudioConnection, project_id: int, video_path: str | Path, every: int = 5,
                  max_frames: int | None = None, max_seconds: float | None = None, image_key: str = "image",
                  video_ref: str | None = None, image_format: str = "jpeg", max_pixels: int = 0) -> list[int]:
    """Import every `every`-th frame of the local video as image tasks; returns the new task ids in frame order.

    `video_ref` is stored as the tasks' "video" (default: the file name). Frames keep their size; a video whose
    frames have more than `max_pixels` pixels (0 = no limit) is refused. Raises `TaskError` for an unreadable or
    refused video and `BadRequest` when Label Studio refuses a step.
    """
    video_name = Path(video_path).name
    tasks: list[dict] = []
    frames = read_frames(video_path, every, max_frames, max_seconds, max_pixels=max_pixels)
    for batch in _batches(frames, UPLOAD_BATCH):
        names = [frame_file_name(video_name, f, image_format) for f in batch]
        # one field name per file: Label Studio reads `request.FILES.items()`, one file per field
        files = {name: (name, encode_frame(f, image_format), f"image/{image_format}") for name, f in zip(names, batch)}
        uploaded = call_label_studio(connection, "POST", f"/api/projects/{project_id}/import",
                                     params={"commit_to_project": "false"}, files=files).json()
        ids = uploaded.get("file_upload_ids") or []
        listed = call_label_studio(connection, "GET", f"/api/projects/{project_id}/file-uploads",
                                   params={"ids": json.dumps(ids)}).json()
        stored = {str(item["file"]).rsplit("/", 1)[-1].split("-", 1)[-1]: str(item["file"]) for item in listed
                  if item.get("id") in ids}
        for name, frame in zip(names, batch):
            if name not in stored:
                raise BadRequest(f"Label Studio did not report the upload of {name}")
            tasks.append({"data": {image_key: MEDIA_URL + stored[name].lstrip("/"), "video": video_ref or video_name,
                                   "frame": frame.index, "time": round(frame.time_s, 6)}})
    task_ids: list[int] = []
    for batch in _batches(iter(tasks), TASK_BATCH):
        created = call_label_studio(connection, "POST", f"/api/projects/{project_id}/import",
                                    params={"return_task_ids": "true"}, json=batch).json()
        task_ids.extend(int(i) for i in created.get("task_ids") or [])
    return task_ids


def _batches(items: Iterator, size: int) -> Iterable[list]:
    batch = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def main(argv: list[str] | None = None) -> int:
    from backend.core.settings import Settings

    parser = argparse.ArgumentParser(prog="python -m backend.labelstudio.frames_import",
                                     description="Import every k-th frame of a video into a Label Studio "
                                                 "project as image tasks.")
    parser.add_argument("video", help="local video file")
    parser.add_argument("--project", type=int, required=True, help="Label Studio project id")
    parser.add_argument("--every", type=int, default=5, help="frame step k (default 5)")
    parser.add_argument("--max-frames", type=int, default=None, help="import at most this many frames")
    parser.add_argument("--max-seconds", type=float, default=None, help="stop at this time in the video")
    parser.add_argument("--image-key", default=None, help="task data key of the image (default: the project's <Image>)")
    parser.add_argument("--video-url", default=None, help='stored as the tasks\' "video" (default: the file name)')
    parser.add_argument("--format", choices=("jpeg", "png"), default="jpeg")
    parser.add_argument("--url", default=None, help="Label Studio URL (default: LABEL_STUDIO_URL)")
    parser.add_argument("--api-key", default=None, help="Label Studio API key (default: LABEL_STUDIO_API_KEY)")
    args = parser.parse_args(argv)
    if args.every < 1:
        parser.error("--every must be >= 1")
    settings = Settings.from_env()
    connection = LabelStudioConnection(args.url or settings.label_studio_url,
                                       args.api_key or settings.label_studio_api_key)
    if not connection.base_url:
        parser.error("no Label Studio URL: pass --url or set LABEL_STUDIO_URL")
    try:
        image_key = args.image_key or project_image_key(connection, args.project)
        ids = import_frames(connection, args.project, args.video, args.every, args.max_frames, args.max_seconds,
                            image_key, args.video_url, args.format, settings.max_image_pixels)
    except BackendError as exc:  # BadRequest from Label Studio, TaskError from the video
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    print(json.dumps({"project": args.project, "image_key": image_key, "tasks": len(ids), "task_ids": ids}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
