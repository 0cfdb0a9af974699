"""Handing job ids to the RQ queues of `REDIS_URL` (the worker side is `backend.jobs.rq_queue`).

Two queues, so predict and review work never waits behind a training on a worker that could take it: `train`
jobs go to `TRAIN_QUEUE`, predict and review jobs and the parts of predict jobs to `PREDICT_QUEUE`. A worker
listens to both by default, the predict queue first (`python -m backend.jobs.rq_queue --queues predict,train`);
give predict work a worker of its own (`--queues predict`) so it also never waits for a running training.
"""

from __future__ import annotations

from backend.jobs.queue import TRAIN_JOB

TRAIN_QUEUE = "autolabel-train"
PREDICT_QUEUE = "autolabel-predict"
QUEUES = {"train": TRAIN_QUEUE, "predict": PREDICT_QUEUE}  # --queues names → RQ queue names
WORKER_FUNCTION = "backend.jobs.rq_queue.run_job"  # by name: RQ workers import it, this process never does
PART_FUNCTION = "backend.jobs.rq_queue.run_part"


REDIS_TIMEOUT_S = 2.0  # connect and answer timeout of the service's Redis calls (a webhook must answer in 1 s)


def rq_job_id(job_id: int) -> str:
    return f"autolabel-job-{job_id}"


class RQDispatcher:
    """Puts job ids on the RQ queues of `redis_url` (calls time out after `REDIS_TIMEOUT_S`)."""

    def __init__(self, redis_url: str):
        from redis import Redis
        from rq import Queue

        self.connection = Redis.from_url(redis_url, socket_timeout=REDIS_TIMEOUT_S,
                                         socket_connect_timeout=REDIS_TIMEOUT_S)
        self.queues = {name: Queue(queue, connection=self.connection) for name, queue in QUEUES.items()}

    def known(self, job_id: int) -> bool:
        """Whether Redis still holds job `job_id` (queued or running); False after Redis lost its data."""
        from rq.job import Job

        return Job.exists(rq_job_id(job_id), connection=self.connection)

    def submit(self, job_id: int, kind: str, timeout_s: float) -> None:
        queue = self.queues["train" if kind == TRAIN_JOB else "predict"]  # lanes: training, other work
        queue.enqueue(WORKER_FUNCTION, job_id, job_timeout=int(timeout_s), job_id=rq_job_id(job_id),
                      description=f"job {job_id} ({kind})")

    def submit_part(self, job_id: int, part: int, timeout_s: float) -> None:
        self.queues["predict"].enqueue(PART_FUNCTION, job_id, part, job_timeout=int(timeout_s),
                                       job_id=f"autolabel-job-{job_id}-part-{part}",
                                       description=f"job {job_id} part {part}")
