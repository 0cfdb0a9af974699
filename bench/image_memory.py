"""Memory of one `/predict` on a very large image: an 8900 x 8900 PNG (a few hundred KB on the wire, under the
80 MP cap) through the real service (LIME pipeline, rectangle + brush controls), 1 task and 4 tasks per request.

Each measurement runs in a fresh process: peak RSS during the request and RSS after it (freed heap handed back
to the OS before both readings), both minus the RSS before it (models already loaded by a small warm-up
request). `--working-side 100000` keeps the full size (what the service did before it decoded to a working size).

Usage: python bench/image_memory.py [--side 8900] [--working-side 2048]
Ends with one JSON line: peak_mb_1, after_mb_1, peak_mb_4, after_mb_4, side, working_side.
"""

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import io, json, resource, sys, tempfile, gc
from pathlib import Path
sys.path.insert(0, {root!r})
import numpy as np, psutil
from PIL import Image
from backend.core.settings import Settings
from backend.service.app import create_app
from tests.conftest import FilePeer

side, tasks, working = {side}, {tasks}, {working}
image = np.zeros((side, side, 3), np.uint8)
image[side // 4: side // 2, side // 4: side // 2] = (200, 120, 40)
buf = io.BytesIO(); Image.fromarray(image).save(buf, format="PNG"); png = buf.getvalue(); del image, buf
peer = FilePeer()
for i in range(tasks):
    peer.routes[f"/data/upload/1/big{{i}}.png"] = (200, png, {{}})
peer.routes["/data/upload/1/small.png"] = (200, png_small := (lambda b: (Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(b, format="PNG"), b.getvalue())[1])(io.BytesIO()), {{}})
config = ('<View><Image name="image" value="$image"/><RectangleLabels name="box" toName="image"><Label value="cat"/>'
          '</RectangleLabels><BrushLabels name="brush" toName="image"><Label value="cat"/></BrushLabels></View>')
settings = Settings(model_dir=Path(tempfile.mkdtemp()), preload_models=False, device="cpu", run_jobs=False,
                    label_studio_url=peer.url, label_studio_api_key="k" * 40, working_image_side=working,
                    image_cache_mb=0, predict_concurrency=3, threads=4)
client = create_app(settings).test_client()
client.post("/setup", json={{"project": 1, "schema": config, "extra_params": {{"num_samples": 64}}}})
assert client.post("/predict", json={{"project": 1, "tasks": [{{"id": 0, "data": {{"image": "/data/upload/1/small.png"}}}}]}}).status_code == 200
from backend.labelstudio.decode import release_free_memory
gc.collect(); release_free_memory()
before = psutil.Process().memory_info().rss
body = {{"project": 1, "tasks": [{{"id": i + 1, "data": {{"image": f"/data/upload/1/big{{i}}.png"}}}} for i in range(tasks)]}}
response = client.post("/predict", json=body)
assert response.status_code == 200, response.get_data()[:300]
results = response.get_json()["results"]
assert all("result" in r for r in results), results
del response, results
gc.collect(); release_free_memory()
after = psutil.Process().memory_info().rss
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({{"peak_mb": round((peak - before) / 2**20), "after_mb": round((after - before) / 2**20),
                  "png_kb": round(len(png) / 1024, 1)}}))
"""


def measure(side: int, tasks: int, working: int) -> dict:
    script = CHILD.format(root=str(ROOT), side=side, tasks=tasks, working=working)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=1800)
    if out.returncode != 0:
        raise SystemExit(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--side", type=int, default=8900)
    parser.add_argument("--working-side", type=int, default=2048)
    args = parser.parse_args()
    result = {"side": args.side, "working_side": args.working_side}
    for tasks in (1, 4):
        figures = measure(args.side, tasks, args.working_side)
        print(f"{tasks} task(s) of {args.side}x{args.side} ({figures['png_kb']} KB PNG): peak +{figures['peak_mb']} MB, "
              f"after +{figures['after_mb']} MB")
        result |= {f"peak_mb_{tasks}": figures["peak_mb"], f"after_mb_{tasks}": figures["after_mb"]}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
