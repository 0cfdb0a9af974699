"""The SQLite state file under MODEL_DIR shared by every worker process: project settings from `/setup`, webhook
events, and (in `backend.jobs`) the job table. Imports only `backend.core`."""
