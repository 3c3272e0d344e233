"""``cnntune dashboard``: optuna-dashboard served on the study store.

The store is opened the way every reading command opens it (an existing store only, passwords never shown) and
handed to optuna-dashboard's WSGI app, which runs in the standard library's threaded ``wsgiref`` server, as
optuna-dashboard's own command does. The server socket is bound here, before anything is served, so that a port in
use or a host that cannot be listened on is one error a user can act on. Nothing here imports Keras.
"""

from __future__ import annotations

import errno
import ipaddress
from dataclasses import dataclass
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from tuner.errors import CnntuneError, StorageError
from tuner.store import DEFAULT_STORAGE, load_study, open_storage, redact, sqlite_file

__all__ = ["DEFAULT_HOST", "DEFAULT_PORT", "Dashboard", "dashboard_url", "open_dashboard"]

# Loopback unless told otherwise: the dashboard can rename and delete studies, so it is not for the whole network.
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080


class _Server(ThreadingMixIn, WSGIServer):
    # One thread per request (the SPA fetches several API routes at once); daemon threads so that Ctrl-C does not
    # wait for a browser's open connections.
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    """No access-log line per request: the terminal keeps the one line with the URL."""

    def log_message(self, format: str, *args) -> None:  # noqa: A002 (the standard library's parameter name)
        pass


@dataclass
class Dashboard:
    """A dashboard whose socket is bound and listening; ``serve()`` answers requests until interrupted.

    Attributes:
        url: where a browser opens it: the study's page when a study was named, else the list of studies.
        storage: the store's URL, password hidden.
        study: the study named, or ``None``.
        server: the bound WSGI server.
    """

    url: str
    storage: str
    study: str | None
    server: WSGIServer

    def serve(self) -> None:
        """Answers requests until ``KeyboardInterrupt`` (Ctrl-C) or ``close()`` from another thread."""
        self.server.serve_forever()

    def close(self) -> None:
        """Stops serving (when serving in another thread) and frees the port."""
        self.server.shutdown()
        self.server.server_close()


def dashboard_url(host: str, port: int, study_id: int | None = None) -> str:
    """The address a browser on this machine opens.

    A wildcard host (``0.0.0.0``, ``::``) listens on every interface; the URL names the loopback address, which
    always reaches it from here. IPv6 addresses are bracketed.

    Args:
        host: the address the server listens on.
        port: its port.
        study_id: the storage's id of a study: the URL opens that study's page (optuna-dashboard's
            ``/dashboard/studies/<id>`` route).

    Returns:
        ``http://host:port/dashboard[/studies/<id>]``.
    """
    shown = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    try:
        if ipaddress.ip_address(shown).version == 6:
            shown = f"[{shown}]"
    except ValueError:
        pass  # a host name, used as it is
    path = "/dashboard" if study_id is None else f"/dashboard/studies/{study_id}"
    return f"http://{shown}:{port}{path}"


def open_dashboard(storage: str | None = None, study: str | None = None, host: str = DEFAULT_HOST,
                   port: int = DEFAULT_PORT) -> Dashboard:
    """Opens the study store and binds the dashboard's server; serves nothing yet.

    Args:
        storage: an Optuna storage URL (``None``: ``sqlite:///cnntune.db`` in the working directory). It must exist
            already: a dashboard never creates an empty store.
        study: a study that must exist in the store; the URL then opens its page.
        host: the address to listen on (default loopback; ``0.0.0.0`` for every interface).
        port: the port to listen on; ``0`` takes any free port (the URL says which).

    Returns:
        A ``Dashboard``; call ``serve()``.

    Raises:
        CnntuneError: the store cannot be opened, the study does not exist, the port is out of range, in use, or the
            host cannot be listened on.
    """
    if not 0 <= port <= 65535:
        raise CnntuneError(f"--port must be between 0 and 65535. Received: port={port}")
    url = storage or DEFAULT_STORAGE
    file = sqlite_file(url)
    if file is not None and not file.expanduser().is_file():
        # Opening a missing SQLite file would create an empty store; a dashboard on it shows nothing useful.
        raise StorageError(f"no study store at {file}; run `cnntune search` here first or pass --storage")
    opened = open_storage(url)
    study_id = None
    if study is not None:
        load_study(opened, study, url)  # one line naming the known studies when it does not exist
        study_id = opened.get_study_id_from_name(study)

    # Imported only now: bad input above is answered without loading the dashboard's web framework.
    from optuna_dashboard import wsgi

    app = wsgi(opened)
    server = _bind(app, host, port)
    bound_port = server.server_address[1]
    return Dashboard(url=dashboard_url(host, bound_port, study_id), storage=redact(url), study=study, server=server)


def _bind(app, host: str, port: int) -> WSGIServer:
    try:
        return make_server(host, port, app, server_class=_Server, handler_class=_QuietHandler)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise CnntuneError(f"port {port} on {host} is in use; pick another with --port") from None
        reason = exc.strerror or str(exc) or type(exc).__name__
        raise CnntuneError(f"cannot listen on {host}:{port}: {reason}") from None
