"""The gunicorn worker `make serve` and the Docker image run: gunicorn supervises the processes (`WORKERS`, restarts,
graceful SIGTERM), and each worker serves with waitress, which reads every request completely — headers and body
— in its asynchronous I/O loop before one of its `THREADS` threads runs the app. A client that sends a byte and
stalls, or trickles its headers or body, costs a socket, never a thread, so `/health`, `/setup` and `/webhook`
keep answering (gunicorn's own threaded worker hands a connection to a thread as soon as its first byte arrives).

Unlike an ASGI server, waitress sends the WSGI status line as the app wrote it, so an error's reason phrase (which
Label Studio shows the admin, `backend.service.app.status_line`) reaches Label Studio.

Limits (`LIMITS`): at most `CONNECTIONS` open connections per worker (beyond that new ones wait in the listen
backlog); a connection with no traffic for `IDLE_TIMEOUT_S` is closed; headers at most 256 KiB; bodies at most the
app's 32 MiB (bigger ones are refused with 413 before they are read); bodies above 512 KiB are buffered in a
temporary file, not in memory.
"""

from __future__ import annotations

import _thread
import os
import threading
import time

from gunicorn.workers.base import Worker

CONNECTIONS = 1000
IDLE_TIMEOUT_S = 60
MAX_BODY_BYTES = 32 * 1024 * 1024 + 1  # one byte over the app's limit reaches the app, which answers 413


def limits(threads: int) -> dict:
    """waitress adjustments for a worker with `threads` application threads."""
    return {"threads": threads, "connection_limit": CONNECTIONS, "channel_timeout": IDLE_TIMEOUT_S,
            "max_request_header_size": 256 * 1024, "max_request_body_size": MAX_BODY_BYTES,
            "inbuf_overflow": 512 * 1024, "asyncore_use_poll": True, "ident": "autolabel", "expose_tracebacks": False,
            "clear_untrusted_proxy_headers": True}


class WaitressWorker(Worker):
    """A gunicorn worker process serving its app with waitress on the listening sockets gunicorn opened."""

    def run(self) -> None:
        from waitress.server import create_server

        sockets = [listener.sock for listener in self.sockets]
        for sock in sockets:
            sock.setblocking(False)
        self.server = create_server(self.wsgi, sockets=sockets, **limits(self.cfg.threads))
        threading.Thread(target=self._heartbeat, name="gunicorn-heartbeat", daemon=True).start()
        self.log.info("serving with waitress: %d threads, %d connections at most", self.cfg.threads, CONNECTIONS)
        self.server.run()  # returns when the main thread is interrupted (`handle_exit`, after the requests in flight)

    def _heartbeat(self) -> None:
        """Tell the arbiter this worker is alive; stop when the arbiter is gone."""
        while self.alive:
            self.notify()
            if self.ppid != os.getppid():
                self.log.info("parent changed, shutting down: %s", self)
                os.kill(os.getpid(), 15)
                return
            time.sleep(1.0)

    def handle_exit(self, sig, frame) -> None:
        """SIGTERM / SIGINT (graceful): accept no new connection, let the requests in flight finish (at most
        gunicorn's `graceful_timeout` minus 2 s) while waitress keeps sending their answers, then leave `run`."""
        if not self.alive:
            return
        self.alive = False
        server = getattr(self, "server", None)
        if server is None:
            raise SystemExit(0)
        channels = getattr(server, "map", None) or getattr(server, "_map", None) or {}
        for dispatcher in list(channels.values()):
            if getattr(dispatcher, "accepting", False):
                dispatcher.accepting = False  # waitress's listening sockets: no new connection
        threading.Thread(target=self._finish_then_stop, name="graceful-stop", daemon=True).start()

    def _finish_then_stop(self) -> None:
        tasks = self.server.task_dispatcher
        deadline = time.monotonic() + max(1.0, self.cfg.graceful_timeout - 2.0)
        while (tasks.active_count or tasks.queue) and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)  # the last answers leave the buffers
        _thread.interrupt_main()  # waitress's loop ends (KeyboardInterrupt), its threads stop

    def handle_quit(self, sig, frame) -> None:
        """SIGQUIT (immediate): stop now."""
        self.alive = False
        raise SystemExit(0)
