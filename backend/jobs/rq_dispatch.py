"""Handing job ids to the RQ queue of `REDIS_URL` (the worker side is `backend.jobs.rq_queue`)."""

from __future__ import annotations

QUEUE_NAME = "autolabel-train"
WORKER_FUNCTION = "backend.jobs.rq_queue.run_job"  # by name: RQ workers import it, this process never does
PART_FUNCTION = "backend.jobs.rq_queue.run_part"


class RQDispatcher:
    """Puts job ids on the RQ queue of `redis_url`."""

    def __init__(self, redis_url: str):
        from redis import Redis
        from rq import Queue

        self.queue = Queue(QUEUE_NAME, connection=Redis.from_url(redis_url))

    def submit(self, job_id: int, timeout_s: float) -> None:
        self.queue.enqueue(WORKER_FUNCTION, job_id, job_timeout=int(timeout_s), job_id=f"autolabel-job-{job_id}",
                           description=f"job {job_id}")

    def submit_part(self, job_id: int, part: int, timeout_s: float) -> None:
        self.queue.enqueue(PART_FUNCTION, job_id, part, job_timeout=int(timeout_s),
                           job_id=f"autolabel-job-{job_id}-part-{part}", description=f"job {job_id} part {part}")
