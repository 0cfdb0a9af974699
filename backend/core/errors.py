"""Errors that carry an HTTP status and a message the Label Studio admin can act on."""

import re

_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


def without_addresses(message: str) -> str:
    """`message` with memory addresses left out ("<_io.BytesIO object at 0x7f…>" → "<_io.BytesIO object>"): they
    mean nothing to an admin and differ on every call."""
    return _ADDRESS.sub("", str(message))


class BackendError(Exception):
    """Base class: `status` is the HTTP status the service answers with; the message never carries memory
    addresses."""

    status = 500

    def __init__(self, message: str):
        message = without_addresses(message)
        super().__init__(message)
        self.message = message


class BadRequest(BackendError):
    """The request itself is wrong (malformed JSON, unsupported config, bad parameter)."""

    status = 400


class NotEnoughData(BadRequest):
    """A project has too few usable annotations to train a model of some kind (yet)."""


class NotFound(BackendError):
    status = 404


class ProjectNotSetUp(NotFound):
    """A project this service has no `/setup` for, so its label config is unknown (`ProjectStore.set_up`)."""

    def __init__(self, project_id):
        super().__init__(f"project {project_id} is not set up here: connect this backend as the project's model in "
                         "Label Studio first (Settings → Model; it calls /setup)")


class Unauthorized(BackendError):
    status = 401


class TaskError(BackendError):
    """One task cannot be predicted (image missing, unreachable, corrupt, too large).

    The rest of the batch still gets predictions; this task gets an error entry.
    """

    status = 422


class ModelUnavailable(BackendError):
    """A pipeline's weights could not be loaded."""

    status = 503


class PrelabellingFails(BackendError):
    """A project's pre-labelling cannot work now (Label Studio unreachable or refusing the token, every task of the
    last predict job failed): `/setup` answers with it so Label Studio marks the model "Error" with this reason."""

    status = 503


class StorageUnavailable(BackendError):
    """The state under MODEL_DIR cannot be written (full disk, quota, read-only mount): retry once it is fixed."""

    status = 503


class LabelStudioUnavailable(BackendError):
    """Label Studio cannot be reached or answers 502/503/504 (down, restarting): background jobs wait for it and
    retry (`backend.jobs.outage`)."""

    status = 503


class Overloaded(BackendError):
    """The service has accepted as much work as it can finish in time; the caller should retry later."""

    status = 503

    def __init__(self, message: str, retry_after_s: int = 5):
        super().__init__(message)
        self.retry_after_s = retry_after_s


class Cancelled(Exception):
    """Background work stopped on request (job cancelled, process shutting down); not a failure."""


class JobCancelled(Cancelled):
    """A job stopped because someone asked to cancel it (`POST /jobs/<id>/cancel`): it ends as cancelled."""


