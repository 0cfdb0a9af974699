"""Networks, their specs, builders, checkpoints and inference helpers, shared by adapters/ (serving) and
training/ (learning). Import only `backend.core`."""
