"""The few MLflow calls a tracker makes, behind one small interface with two implementations.

``Rest`` speaks MLflow's REST API (``/api/2.0/mlflow/...``) with the standard library: it serves ``http(s)://``
tracking servers without importing MLflow, whose client takes over a second of CPU to import (BENCHMARKS.md,
"Tracking"). It reads the credentials MLflow's client reads from the environment (``MLFLOW_TRACKING_USERNAME`` and
``MLFLOW_TRACKING_PASSWORD``, ``MLFLOW_TRACKING_TOKEN``, ``MLFLOW_TRACKING_INSECURE_TLS``,
``MLFLOW_TRACKING_SERVER_CERT_PATH``) or the URL's ``user:password@``. Every call gives up after 5 s and is tried
once more (MLflow's own client retries for minutes).

``Client`` wraps ``MlflowClient`` for everything else: ``file:`` and database URIs, Databricks, an auth plugin
(``MLFLOW_TRACKING_AUTH``), client certificates or a credentials file (``~/.mlflow/credentials``), and any server
when ``CNNTUNE_MLFLOW_CLIENT`` is set.

``server(uri)`` picks one.
"""

from __future__ import annotations

import base64
import json
import os
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Iterator, NamedTuple

__all__ = ["Client", "Found", "Rest", "TRACK_TIMEOUTS", "TrackerError", "needs_client", "server"]

# The MLflow client's defaults retry a failing call for minutes (7 retries, 120 s timeouts): here a call gives up
# within seconds; the variables still win when set.
TRACK_TIMEOUTS = {"MLFLOW_HTTP_REQUEST_TIMEOUT": "5", "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
                  "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1"}
_TIMEOUT_S = 5.0
_BACKOFF_S = 1.0
# MLflow's limits per log-batch call.
_MAX_METRICS, _MAX_PARAMS, _MAX_TAGS = 1000, 100, 100
_TERMINAL = {"FINISHED", "FAILED", "KILLED"}


class TrackerError(Exception):
    """The tracking server refused a call (its error code and message)."""


class Found(NamedTuple):
    """A run a search found: its id, status and tags."""

    run_id: str
    status: str
    tags: dict[str, str]


Metric = tuple[str, float, int, int]  # key, value, timestamp (ms), step


def needs_client(uri: str) -> bool:
    """Whether ``uri`` needs MLflow's client (``Client``) rather than ``Rest``: anything but an ``http(s)://`` URI
    whose credentials, if any, ``Rest`` reads."""
    scheme = urllib.parse.urlsplit(uri).scheme
    plugin = any(os.environ.get(k) for k in ("MLFLOW_TRACKING_AUTH", "MLFLOW_TRACKING_CLIENT_CERT_PATH",
                                              "CNNTUNE_MLFLOW_CLIENT"))  # the last: MLflow's client, always
    return scheme not in ("http", "https") or plugin or (Path.home() / ".mlflow" / "credentials").exists()


def server(uri: str) -> "Rest | Client":
    """``Client`` where ``needs_client(uri)``, else ``Rest``."""
    return Client(uri) if needs_client(uri) else Rest(uri)


def _batches(params: dict[str, str], metrics: list[Metric],
             tags: dict[str, str]) -> Iterator[tuple[list, list, list]]:
    """``(params, metrics, tags)`` in batches within MLflow's limits per call."""
    p, t = list(params.items()), list(tags.items())
    n = max(1, -(-len(metrics) // _MAX_METRICS), -(-len(p) // _MAX_PARAMS), -(-len(t) // _MAX_TAGS))
    for i in range(n):
        yield (p[i * _MAX_PARAMS:(i + 1) * _MAX_PARAMS], metrics[i * _MAX_METRICS:(i + 1) * _MAX_METRICS],
               t[i * _MAX_TAGS:(i + 1) * _MAX_TAGS])


class Rest:
    """MLflow's REST API over ``urllib`` (see the module)."""

    def __init__(self, uri: str):
        parts = urllib.parse.urlsplit(uri)
        netloc = parts.hostname or ""
        if ":" in netloc:
            netloc = f"[{netloc}]"
        if parts.port:
            netloc += f":{parts.port}"
        self.base = urllib.parse.urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))
        self.headers = {"Content-Type": "application/json"}
        user = os.environ.get("MLFLOW_TRACKING_USERNAME") or urllib.parse.unquote(parts.username or "")
        password = os.environ.get("MLFLOW_TRACKING_PASSWORD") or urllib.parse.unquote(parts.password or "")
        token = os.environ.get("MLFLOW_TRACKING_TOKEN")
        if user and password:
            basic = base64.b64encode(f"{user}:{password}".encode()).decode()
            self.headers["Authorization"] = f"Basic {basic}"
        elif token:
            self.headers["Authorization"] = f"Bearer {token}"
        self.context = None
        if parts.scheme == "https":
            if os.environ.get("MLFLOW_TRACKING_INSECURE_TLS", "").lower() == "true":
                self.context = ssl._create_unverified_context()
            else:
                self.context = ssl.create_default_context(cafile=os.environ.get("MLFLOW_TRACKING_SERVER_CERT_PATH"))

    def _call(self, method: str, endpoint: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        url = f"{self.base}/api/2.0/mlflow/{endpoint}"
        data = None
        if method == "GET" and body:
            url += "?" + urllib.parse.urlencode(body)
        elif body is not None:
            data = json.dumps(body).encode()
        for attempt in (1, 2):
            request = urllib.request.Request(url, data=data, method=method, headers=self.headers)
            try:
                with urllib.request.urlopen(request, timeout=_TIMEOUT_S, context=self.context) as response:
                    return json.loads(response.read() or b"{}")
            except urllib.error.HTTPError as exc:
                text = exc.read().decode(errors="replace")
                if exc.code in (429, 500, 502, 503, 504) and attempt == 1:
                    time.sleep(_BACKOFF_S)
                    continue
                try:
                    error = json.loads(text)
                    raise TrackerError(f"{error.get('error_code', exc.code)}: {error.get('message', '')}") from None
                except ValueError:
                    raise TrackerError(f"HTTP {exc.code} from {endpoint}: {text[:200]}") from None
            except (urllib.error.URLError, TimeoutError, ConnectionError):
                if attempt == 2:
                    raise
                time.sleep(_BACKOFF_S)
        raise AssertionError("unreachable")

    def find_experiment(self, name: str) -> str | None:
        try:
            return self._call("GET", "experiments/get-by-name", {"experiment_name": name})["experiment"][
                "experiment_id"]
        except TrackerError as exc:
            if str(exc).startswith("RESOURCE_DOES_NOT_EXIST"):
                return None
            raise

    def experiment(self, name: str, tags: dict[str, str]) -> str:
        """The experiment ``name``'s id, created (with ``tags``) when missing."""
        found = self.find_experiment(name)
        if found is not None:
            return found
        try:
            return self._call("POST", "experiments/create", {"name": name, "tags": _kv(tags)})["experiment_id"]
        except TrackerError as exc:  # another worker created it first
            if str(exc).startswith("RESOURCE_ALREADY_EXISTS"):
                return self.experiment(name, tags)
            raise

    def create_run(self, experiment: str, name: str, tags: dict[str, str]) -> str:
        body = {"experiment_id": experiment, "run_name": name, "start_time": int(time.time() * 1000),
                "tags": _kv(tags)}
        return self._call("POST", "runs/create", body)["run"]["info"]["run_id"]

    def log(self, run: str, *, params: dict[str, str] | None = None, metrics: list[Metric] | None = None,
            tags: dict[str, str] | None = None) -> None:
        for p, m, t in _batches(params or {}, metrics or [], tags or {}):
            self._call("POST", "runs/log-batch", {
                "run_id": run, "params": [{"key": k, "value": v} for k, v in p], "tags": _kv(dict(t)),
                "metrics": [{"key": k, "value": v, "timestamp": ts, "step": s} for k, v, ts, s in m]})

    def set_status(self, run: str, status: str) -> None:
        body: dict[str, Any] = {"run_id": run, "status": status}
        if status in _TERMINAL:
            body["end_time"] = int(time.time() * 1000)
        self._call("POST", "runs/update", body)

    def runs(self, experiment: str, filter_string: str) -> list[Found]:
        found, token = [], None
        while True:
            body = {"experiment_ids": [experiment], "filter": filter_string, "max_results": 1000}
            if token:
                body["page_token"] = token
            page = self._call("POST", "runs/search", body)
            for run in page.get("runs", []):
                tags = {t["key"]: t.get("value", "") for t in run.get("data", {}).get("tags", [])}
                found.append(Found(run["info"]["run_id"], run["info"].get("status", ""), tags))
            token = page.get("next_page_token")
            if not token:
                return found


def _kv(values: dict[str, str]) -> list[dict[str, str]]:
    return [{"key": k, "value": v} for k, v in values.items()]


class Client:
    """The same calls through ``mlflow.tracking.MlflowClient`` (imported on first use)."""

    def __init__(self, uri: str):
        for key, value in TRACK_TIMEOUTS.items():
            os.environ.setdefault(key, value)
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient(tracking_uri=uri)

    def find_experiment(self, name: str) -> str | None:
        found = self.client.get_experiment_by_name(name)
        return None if found is None else found.experiment_id

    def experiment(self, name: str, tags: dict[str, str]) -> str:
        found = self.find_experiment(name)
        return found if found is not None else self.client.create_experiment(name, tags=tags)

    def create_run(self, experiment: str, name: str, tags: dict[str, str]) -> str:
        return self.client.create_run(experiment, run_name=name, tags=tags).info.run_id

    def log(self, run: str, *, params: dict[str, str] | None = None, metrics: list[Metric] | None = None,
            tags: dict[str, str] | None = None) -> None:
        from mlflow.entities import Metric as M, Param, RunTag

        for p, m, t in _batches(params or {}, metrics or [], tags or {}):
            self.client.log_batch(run, metrics=[M(k, v, ts, s) for k, v, ts, s in m],
                                  params=[Param(k, v) for k, v in p], tags=[RunTag(k, v) for k, v in t])

    def set_status(self, run: str, status: str) -> None:
        if status in _TERMINAL:
            self.client.set_terminated(run, status=status)
        else:
            self.client.update_run(run, status=status)

    def runs(self, experiment: str, filter_string: str) -> list[Found]:
        found, token = [], None
        while True:
            page = self.client.search_runs([experiment], filter_string=filter_string, max_results=1000,
                                           page_token=token)
            found.extend(Found(r.info.run_id, r.info.status, dict(r.data.tags)) for r in page)
            token = page.token
            if not token:
                return found
