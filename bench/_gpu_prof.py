import sys, time, cProfile, pstats, torch
sys.path.insert(0, "."); sys.path.insert(0, "bench")
from lime_boxes import bench_images, ONTOLOGY
from backend.adapters.base import LazyModel
from backend.adapters.classifier import build_classifier
from backend.pipelines.lime_boxes import LimeBoxesPipeline
from backend.pipelines.lime_explain import superpixels
from backend.core.params import PredictParams
from concurrent.futures import ThreadPoolExecutor
c = build_classifier("efficientnet-lite0", "cuda")
p = LimeBoxesPipeline(LazyModel("c", "e", lambda: c))
imgs = bench_images(32)
p.predict(imgs[:4], ONTOLOGY, PredictParams())
t = time.perf_counter(); [superpixels(i, 40) for i in imgs]; print("slic serial per img ms", (time.perf_counter()-t)/32*1000)
with ThreadPoolExecutor(8) as ex:
    t = time.perf_counter(); list(ex.map(lambda i: superpixels(i, 40), imgs)); print("slic 8 threads per img ms", (time.perf_counter()-t)/32*1000)
torch.cuda.synchronize(); t = time.perf_counter(); p.predict(imgs, ONTOLOGY, PredictParams()); torch.cuda.synchronize(); print("predict img/s", 32/(time.perf_counter()-t))
x = torch.rand(256, 3, 224, 224, device="cuda")
xn = c.normalize(x); c.probabilities_normalized(xn); torch.cuda.synchronize()
t = time.perf_counter()
for _ in range(10): c.probabilities_normalized(xn)
torch.cuda.synchronize(); print("forward 256 ms", (time.perf_counter()-t)/10*1000)
cProfile.run("p.predict(imgs, ONTOLOGY, PredictParams())", "/tmp/p.out")
pstats.Stats("/tmp/p.out").sort_stats("tottime").print_stats(15)
