"""The container and cluster files, checked offline: the Dockerfile lints clean (hadolint), the compose files are valid
(docker-compose's schema where Debian's docker-compose is installed, podman-compose's own reading always) and ask for
what a GPU cluster needs, the Kubernetes manifests validate strictly against the API schemas (kubernetes-validate),
as they are and with the alternatives of kustomization.yaml enabled (a volume for the artifacts, spot nodes), and
every ``cnntune`` command in these files parses with the real CLI. The compose file's waiters run here against a test
S3 server. Building and running the image is ``make container-test`` (deploy/container-test.sh)."""

from __future__ import annotations

import copy
import importlib.util
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
import typer
import yaml

from tuner.cli import app

from conftest import ROOT

DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE = DEPLOY / "compose.yaml"
COMPOSE_CPU = DEPLOY / "compose.cpu.yaml"
BIN = Path(sys.executable).parent  # the dev extra's tools live beside the interpreter
KUSTOMIZATION = K8S / "kustomization.yaml"
# Kubernetes objects (resources of the kustomization, enabled or not), and the kustomize patches beside them.
PATCHES = sorted(K8S.glob("*-patch.yaml"))
MANIFESTS = sorted(p for p in K8S.glob("*.yaml") if p != KUSTOMIZATION and p not in PATCHES)
# What the cnntune containers need for a bucket: each store's variables, from these keys of the secret.
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "aws-access-key-id", "AWS_SECRET_ACCESS_KEY": "aws-secret-access-key",
               "AWS_DEFAULT_REGION": "aws-default-region", "AWS_ENDPOINT_URL": "aws-endpoint-url",
               "GOOGLE_APPLICATION_CREDENTIALS": "google-application-credentials",
               "AZURE_STORAGE_ACCOUNT_NAME": "azure-storage-account-name",
               "AZURE_STORAGE_ACCOUNT_KEY": "azure-storage-account-key",
               "AZURE_STORAGE_CONNECTION_STRING": "azure-storage-connection-string"}
AWS = [name for name in CREDENTIALS if name.startswith("AWS_")]
# The compose services that run cnntune's image.
COMPOSE_CNNTUNE = {"storage-ready", "artifacts-ready", "create-study", "worker"}


def _tool(name: str) -> str:
    path = BIN / name
    assert path.exists(), f"{name} is missing: install the dev extra (make install)"
    return str(path)


def _run(*argv: str, cwd: Path = ROOT, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    # The files' own defaults, not the caller's CNNTUNE_* or AWS_* settings; `env` on top.
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("CNNTUNE_", "COMPOSE_", "AWS_"))}
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=120, env={**clean, **(env or {})})


def _load_all(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


class _ComposeLoader(yaml.SafeLoader):
    """Reads Compose's ``!reset`` / ``!override`` tags as plain values."""


_ComposeLoader.add_multi_constructor("!", lambda loader, suffix, node: loader.construct_mapping(node)
                                     if isinstance(node, yaml.MappingNode) else None)


def _compose(path: Path) -> dict:
    return yaml.load(path.read_text(), Loader=_ComposeLoader)


# -- Dockerfile ------------------------------------------------------------------------------------------------------
def test_dockerfile_lints_clean():
    proc = _run(_tool("hadolint"), str(DOCKERFILE))
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_dockerfile_gpu_by_default_non_root_cloud_clients_entrypoint():
    text = DOCKERFILE.read_text()
    assert re.search(r"^ARG BASE=tensorflow/tensorflow:[\d.]+-gpu$", text, re.M)
    extras = re.search(r"^ARG EXTRAS=(\S+)$", text, re.M)
    assert extras and {"postgres", "cloud"} <= set(extras.group(1).split(",")), "PostgreSQL and the bucket clients"
    user = re.findall(r"^USER (\S+)", text, re.M)
    assert user and not user[-1].startswith(("root", "0")), "the image must not run as root"
    assert 'ENTRYPOINT ["cnntune"]' in text
    assert not re.search(r"^VOLUME .*/artifacts", text, re.M), "a worker of a study in a bucket needs no volume"
    assert re.search(r"^WORKDIR /artifacts$", text, re.M), "compose mounts the artifacts volume there"
    ignore = (ROOT / ".dockerignore").read_text().split()
    assert ignore[ignore.index("*"):] and "!tuner/" in ignore and "!search_spaces/" in ignore


# -- compose ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("profile", [[], ["--profile", "db"]], ids=["external-db", "bundled-db"])
def test_compose_file_is_valid_for_docker_compose(profile):
    proc = _run(_docker_compose(), "-f", str(COMPOSE), *profile, "config", "-q")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _docker_compose() -> str:
    tool = shutil.which("docker-compose")
    if tool is None:
        pytest.skip("Debian's docker-compose is not installed (make tools installs it); "
                    "test_compose_files_are_read_by_podman_compose checks the files without it")
    return tool


def _podman_compose_config(env: dict[str, str] | None = None) -> dict:
    """The services as `make container-test` starts them: compose.yaml with the CPU override, no profile."""
    proc = _run(_tool("podman-compose"), "--dry-run", "-f", "compose.yaml", "-f", "compose.cpu.yaml", "config",
                cwd=DEPLOY, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return yaml.safe_load(proc.stdout)["services"]


def test_compose_files_are_read_by_podman_compose():
    """podman-compose merges the CPU override (``!reset`` included) the way Docker Compose 2.24+ does; ``--dry-run``
    reads the files without a podman binary."""
    merged = _podman_compose_config()
    assert "postgres" not in merged and "minio" not in merged, "the db profile is off by default"
    assert set(merged) == COMPOSE_CNNTUNE, "every cnntune service gets the CPU override"
    for name, service in merged.items():
        assert service["network_mode"] == "host", name
        assert service["image"] == "cnntune:cpu", name
    assert "resources" not in merged["worker"].get("deploy", {}), "the CPU override drops the GPU reservation"


def test_compose_gpu_workers_shared_volumes_and_order():
    compose = _compose(COMPOSE)
    services = compose["services"]
    assert services["postgres"]["profiles"] == ["db"]
    assert any(v.startswith("pgdata:") for v in services["postgres"]["volumes"])
    worker = services["worker"]
    assert worker["deploy"]["replicas"] == "${CNNTUNE_WORKERS:-2}"
    assert worker["deploy"]["resources"]["reservations"]["devices"] == [
        {"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
    assert worker["depends_on"] == {"create-study": {"condition": "service_completed_successfully"}}
    assert worker["stop_grace_period"] == "60s"
    # The waiters stand in for dependencies on the profiled servers, which do not exist without the profile.
    assert services["create-study"]["depends_on"] == {
        "storage-ready": {"condition": "service_completed_successfully"},
        "artifacts-ready": {"condition": "service_completed_successfully"}}
    for name in COMPOSE_CNNTUNE:
        assert "profiles" not in services[name], name
        assert not set(services[name].get("depends_on", {})) & {"postgres", "minio", "minio-bucket"}, name
        # The volume stays mounted for CNNTUNE_ARTIFACTS=/artifacts.
        assert "artifacts:/artifacts" in services[name]["volumes"], name
    assert {"artifacts", "pgdata", "miniodata"} <= set(compose["volumes"])


ARTIFACTS_DEFAULT = "${CNNTUNE_ARTIFACTS:-s3://cnntune/artifacts}"


def test_compose_artifacts_go_to_the_bucket_of_cnntune_artifacts():
    services = _compose(COMPOSE)["services"]
    script = services["create-study"]["entrypoint"][2]
    assert re.search(r"--artifacts '" + re.escape(ARTIFACTS_DEFAULT) + "'", script), script
    assert services["artifacts-ready"]["command"] == [ARTIFACTS_DEFAULT], "it waits for the location create-study uses"
    assert "--artifacts" not in services["worker"]["command"], "workers read the location from the study"
    # The bundled bucket is the default's bucket.
    bucket = services["minio-bucket"]
    assert bucket["profiles"] == ["db"] and bucket["environment"]["CNNTUNE_ARTIFACTS"] == ARTIFACTS_DEFAULT
    assert bucket["depends_on"] == {"minio": {"condition": "service_healthy"}}


def test_compose_cnntune_services_get_the_bucket_credentials_of_the_bundled_minio_by_default():
    services = _compose(COMPOSE)["services"]
    minio = services["minio"]
    assert minio["profiles"] == ["db"] and minio["command"] == ["server", "/data"] and "healthcheck" in minio
    defaults = {}
    for name in COMPOSE_CNNTUNE:
        env = services[name]["environment"]
        assert set(AWS) <= set(env), name
        for var in AWS:
            # ${VAR-default}, no colon: a variable set to empty stays empty (Amazon S3 needs no endpoint).
            match = re.fullmatch(r"\$\{" + var + r"-([^}]*)\}", str(env[var]))
            assert match, f"{name}: {var}: {env[var]}"
            defaults.setdefault(var, set()).add(match.group(1))
    assert all(len(values) == 1 for values in defaults.values()), defaults
    assert defaults["AWS_ENDPOINT_URL"] == {"http://minio:9000"}, "MinIO's S3 port, by its service name"
    root = minio["environment"]
    for var, minio_var in (("AWS_ACCESS_KEY_ID", "MINIO_ROOT_USER"), ("AWS_SECRET_ACCESS_KEY", "MINIO_ROOT_PASSWORD")):
        # MinIO takes the same variables, so that setting them changes both sides.
        assert root[minio_var] == services["minio-bucket"]["environment"][minio_var]
        match = re.fullmatch(r"\$\{" + var + r":-([^}]*)\}", root[minio_var])
        assert match and {match.group(1)} == defaults[var], (minio_var, root[minio_var])
    assert len(next(iter(defaults["AWS_SECRET_ACCESS_KEY"]))) >= 8, "MinIO refuses a shorter root password"


SETTINGS = {
    "defaults": ({}, {"AWS_ENDPOINT_URL": "http://minio:9000", "AWS_ACCESS_KEY_ID": "cnntune"},
                 "s3://cnntune/artifacts"),
    "amazon-s3": ({"AWS_ENDPOINT_URL": "", "AWS_ACCESS_KEY_ID": "AKIA0", "CNNTUNE_ARTIFACTS": "s3://mine/c25"},
                  {"AWS_ENDPOINT_URL": "", "AWS_ACCESS_KEY_ID": "AKIA0"}, "s3://mine/c25"),
    "instance-role": ({"AWS_ENDPOINT_URL": "", "AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": "",
                       "CNNTUNE_ARTIFACTS": "gs://b/p"}, {"AWS_ENDPOINT_URL": "", "AWS_ACCESS_KEY_ID": ""}, "gs://b/p"),
    "test-server": ({"AWS_ENDPOINT_URL": "http://127.0.0.1:5000", "CNNTUNE_ARTIFACTS": "s3://ct/compose"},
                    {"AWS_ENDPOINT_URL": "http://127.0.0.1:5000"}, "s3://ct/compose"),
}


def _check_settings(services: dict, expected_env: dict[str, str], artifacts: str) -> None:
    for name in COMPOSE_CNNTUNE:
        env = services[name]["environment"]
        for var, value in expected_env.items():
            assert str(env.get(var)) == value, f"{name}: {var}={env.get(var)!r}, not {value!r}"
    assert f"--artifacts '{artifacts}'" in " ".join(services["create-study"]["entrypoint"])
    assert services["artifacts-ready"]["command"] == [artifacts]


@pytest.mark.parametrize("settings", SETTINGS, ids=list(SETTINGS))
def test_compose_settings_reach_the_services_with_podman_compose(settings):
    """What the services get: the bundled MinIO's defaults when nothing is set, a variable set to empty stays empty,
    the test server of `make container-test` (no profile, the CPU override)."""
    env, expected_env, artifacts = SETTINGS[settings]
    _check_settings(_podman_compose_config(env), expected_env, artifacts)


@pytest.mark.parametrize("settings", SETTINGS, ids=list(SETTINGS))
def test_compose_settings_reach_the_services_with_docker_compose(settings):
    env, expected_env, artifacts = SETTINGS[settings]
    proc = _run(_docker_compose(), "-f", str(COMPOSE), "config", env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    _check_settings(yaml.safe_load(proc.stdout)["services"], expected_env, artifacts)


def _python_waiter(name: str, argument: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    entry = _compose(COMPOSE)["services"][name]["entrypoint"]
    assert entry[:2] == ["python", "-c"], name
    return subprocess.run([sys.executable, "-c", entry[2].replace("$$", "$"), argument], capture_output=True,
                          text=True, timeout=180, env={**os.environ, **env}, cwd=ROOT)


def test_compose_artifacts_ready_waits_for_the_bucket(s3_server):
    """The waiter, run here against the test S3 server: it retries until the bucket exists, then exits 0."""
    import boto3

    env = {"AWS_ENDPOINT_URL": s3_server, "AWS_ACCESS_KEY_ID": "cnntune-test", "AWS_SECRET_ACCESS_KEY": "x" * 12,
           "AWS_DEFAULT_REGION": "us-east-1"}
    name = f"cnntune-{uuid.uuid4().hex[:12]}"
    later = threading.Timer(3, lambda: boto3.client("s3", endpoint_url=s3_server, region_name="us-east-1",
                                                    aws_access_key_id="k", aws_secret_access_key="s"
                                                    ).create_bucket(Bucket=name))
    started = time.monotonic()
    later.start()
    try:
        proc = _python_waiter("artifacts-ready", f"s3://{name}/compose", env)
    finally:
        later.cancel()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert time.monotonic() - started >= 3, "it returned before the bucket existed"


def test_compose_artifacts_ready_takes_a_volume_too(tmp_path):
    proc = _python_waiter("artifacts-ready", str(tmp_path / "artifacts"), {})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (tmp_path / "artifacts").is_dir() and not any((tmp_path / "artifacts").iterdir())


def test_compose_storage_ready_opens_the_storage(tmp_path):
    proc = _python_waiter("storage-ready", f"sqlite:///{tmp_path / 'studies.db'}", {})
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("artifacts,made", [("s3://cnntune/artifacts", "minio/cnntune"), ("s3://b", "minio/b"),
                                            ("s3://b/x/y", "minio/b"), ("/artifacts", None), ("gs://b/p", None)])
def test_compose_minio_bucket_makes_the_bucket_of_cnntune_artifacts(tmp_path, artifacts, made):
    """The bucket service's script, with a stand-in for MinIO's client that logs its arguments."""
    log = tmp_path / "mc.log"
    fake = tmp_path / "bin" / "mc"
    fake.parent.mkdir()
    fake.write_text(f'#!/bin/sh\necho "$*" >> {log}\n')
    fake.chmod(0o755)
    service = _compose(COMPOSE)["services"]["minio-bucket"]
    assert service["entrypoint"][:2] == ["/bin/sh", "-c"]
    proc = subprocess.run(["/bin/sh", "-c", service["entrypoint"][2].replace("$$", "$")], capture_output=True,
                          text=True, timeout=30, env={"PATH": f"{fake.parent}:/usr/bin:/bin",
                                                      "CNNTUNE_ARTIFACTS": artifacts, "MINIO_ROOT_USER": "u",
                                                      "MINIO_ROOT_PASSWORD": "p" * 8})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    calls = log.read_text().splitlines() if log.exists() else []
    if made is None:
        assert calls == []
    else:
        assert calls == [f"alias set minio http://minio:9000 u {'p' * 8}", f"mb --ignore-existing {made}"]


# -- Kubernetes ------------------------------------------------------------------------------------------------------
def _kustomization(alternatives: bool = False) -> dict:
    """kustomization.yaml as it is, or with its commented-out entries (the alternatives) enabled, as its header
    tells."""
    text = KUSTOMIZATION.read_text()
    if alternatives:
        text = re.sub(r"(?m)^(  )# (?=- |  )", r"\1", text)
    return yaml.safe_load(text)


def _merge(base, patch):
    """A strategic-merge patch, as far as these files need it: maps merge, lists of named items merge by name, other
    lists (tolerations) are replaced."""
    if isinstance(base, dict) and isinstance(patch, dict):
        return {**base, **{k: _merge(base[k], v) if k in base else copy.deepcopy(v) for k, v in patch.items()}}
    if isinstance(base, list) and isinstance(patch, list) and all(isinstance(i, dict) and "name" in i
                                                                  for i in base + patch):
        merged = list(base)
        for item in patch:
            at = [i for i, old in enumerate(merged) if old["name"] == item["name"]]
            if at:
                merged[at[0]] = _merge(merged[at[0]], item)
            else:
                merged.append(copy.deepcopy(item))
        return merged
    return copy.deepcopy(patch)


def _json_patch(doc: dict, ops: list[dict]) -> dict:
    """An RFC 6902 patch (add and replace); a path whose parent is missing fails, as it does in kustomize."""
    doc = copy.deepcopy(doc)
    for op in ops:
        assert op["op"] in ("add", "replace"), op
        *parents, last = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].split("/")[1:]]
        node = doc
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        value = copy.deepcopy(op["value"])
        if isinstance(node, list):
            if last == "-":
                node.append(value)
            elif op["op"] == "add":
                node.insert(int(last), value)
            else:
                node[int(last)] = value
        else:
            assert op["op"] == "add" or last in node, op
            node[last] = value
    return doc


def _matches(doc: dict, target: dict) -> bool:
    group, _, version = doc["apiVersion"].rpartition("/")
    return (doc["kind"] == target["kind"] and doc["metadata"]["name"] == target["name"]
            and group == target.get("group", "") and version == target.get("version", version))


def _build(kustomization: dict) -> list[dict]:
    """The objects a kustomization makes: its resources with its patches applied."""
    docs = [d for name in kustomization["resources"] for d in _load_all(K8S / name)]
    for patch in kustomization.get("patches") or []:
        content = _load_all(K8S / patch["path"])
        if "target" in patch:  # a JSON patch: a list of operations
            [ops] = content
            found = [i for i, d in enumerate(docs) if _matches(d, patch["target"])]
            assert len(found) == 1, patch
            docs[found[0]] = _json_patch(docs[found[0]], ops)
        else:  # strategic merge: objects named like the ones they change
            for part in content:
                target = {"kind": part["kind"], "name": part["metadata"]["name"],
                          "group": part["apiVersion"].rpartition("/")[0], "version": part["apiVersion"].split("/")[-1]}
                found = [i for i, d in enumerate(docs) if _matches(d, target)]
                assert len(found) == 1, (patch, target)
                docs[found[0]] = _merge(docs[found[0]], part)
    return docs


VARIANTS = {"bucket": False, "volume+spot": True}


def _object(docs: list[dict], kind: str, name: str) -> dict:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}"
    return found[0]


def _k8s(kind: str, name: str) -> dict:
    """An object as the default kustomization makes it."""
    return _object(_build(_kustomization()), kind, name)


@pytest.mark.parametrize("version", ["1.29.0", None], ids=["k8s-1.29", "k8s-latest"])
def test_k8s_manifests_validate_strictly(version):
    argv = [_tool("kubernetes-validate"), "--strict", "--quiet"] + (["-k", version] if version else [])
    proc = _run(*argv, *map(str, MANIFESTS))
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("version", ["1.29.0", None], ids=["k8s-1.29", "k8s-latest"])
def test_k8s_kustomization_builds_objects_that_validate_strictly(tmp_path, variant, version):
    """The patches applied (here, in Python), the result checked against the API schemas."""
    built = tmp_path / f"{variant}.yaml"
    built.write_text(yaml.safe_dump_all(_build(_kustomization(VARIANTS[variant]))))
    argv = [_tool("kubernetes-validate"), "--strict", "--quiet"] + (["-k", version] if version else [])
    proc = _run(*argv, str(built))
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_k8s_kustomization_lists_every_manifest_and_patch():
    default, alternatives = _kustomization(), _kustomization(alternatives=True)
    assert sorted(alternatives["resources"]) == sorted(p.name for p in MANIFESTS)
    assert "artifacts-pvc.yaml" not in default["resources"], "artifacts go to a bucket by default"
    assert not default.get("patches"), "the alternatives are off by default"
    assert sorted(p["path"] for p in alternatives["patches"]) == sorted(p.name for p in PATCHES)
    assert {p.name for p in PATCHES} == {"artifacts-pvc-patch.yaml", "workers-spot-patch.yaml"}


def _unordered(value):
    """Lists of named items (containers, env, volumes) sorted by name: where a strategic merge puts a new item is
    kustomize's choice, and means nothing to Kubernetes."""
    if isinstance(value, dict):
        return {k: _unordered(v) for k, v in value.items()}
    if isinstance(value, list):
        items = [_unordered(v) for v in value]
        named = all(isinstance(i, dict) and "name" in i for i in items)
        return sorted(items, key=lambda i: i["name"]) if items and named else items
    return value


def _images(doc: dict, images: list[dict]) -> dict:
    """kustomize's `images` transformer: the containers' images renamed."""
    doc = copy.deepcopy(doc)
    pod = doc.get("spec", {}).get("template", {}).get("spec", {})
    for container in pod.get("initContainers", []) + pod.get("containers", []):
        name, _, tag = container["image"].partition(":")
        for image in images:
            if image["name"] == name:
                container["image"] = f"{image.get('newName', name)}:{image.get('newTag', tag)}"
    return doc


@pytest.mark.parametrize("variant", VARIANTS)
def test_k8s_kustomize_builds_what_these_tests_build(tmp_path, variant):
    """kustomize itself (kubectl's) builds the kustomization, alternatives enabled or not, into the objects the
    Python above builds: the patches mean what the tests assume."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed; test_k8s_kustomization_builds_objects_that_validate_strictly applies "
                    "the patches without it")
    folder = tmp_path / "k8s"
    shutil.copytree(K8S, folder)
    kustomization = _kustomization(VARIANTS[variant])
    (folder / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    proc = _run(kubectl, "kustomize", str(folder))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    built = {(d["kind"], d["metadata"]["name"]): _unordered(d) for d in yaml.safe_load_all(proc.stdout)}
    mine = {(d["kind"], d["metadata"]["name"]): _unordered(_images(d, kustomization["images"]))
            for d in _build(kustomization)}
    assert built.keys() == mine.keys()
    for key in built:
        assert built[key] == mine[key], key


def test_k8s_indexed_gpu_workers_survive_preemption():
    job = _k8s("Job", "cnntune-workers")["spec"]
    assert job["completionMode"] == "Indexed" and job["parallelism"] == job["completions"]
    assert job["backoffLimit"] >= 10 * job["completions"], "preempted pods must be able to come back"
    pod = job["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] == 60, "the batch in progress plus one checkpoint upload"
    worker = pod["containers"][0]
    assert worker["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert "worker-$(JOB_COMPLETION_INDEX)" in worker["args"]
    assert "--artifacts" not in worker["args"], "workers read the artifacts location from the study"


def _pvc_volumes(pod: dict) -> list[dict]:
    return [v for v in pod.get("volumes", []) if "persistentVolumeClaim" in v]


def test_k8s_artifacts_go_to_the_bucket_of_the_secret():
    secret = _k8s("Secret", "cnntune-storage")["stringData"]
    assert re.fullmatch(r"s3://[a-z0-9.-]+/\S+", secret["artifacts"]), secret["artifacts"]
    assert {"url", "postgres-password", "aws-access-key-id", "aws-secret-access-key"} <= set(secret)
    assert set(secret) <= {"url", "postgres-password", "artifacts", "gcs-key.json", *CREDENTIALS.values()}, \
        "every key of the secret is one the jobs read"
    create = _k8s("Job", "cnntune-create-study")["spec"]["template"]["spec"]
    [container] = create["containers"]
    args = container["args"]
    assert args[args.index("--artifacts") + 1] == "$(CNNTUNE_ARTIFACTS)"
    env = {e["name"]: e for e in container["env"]}
    assert env["CNNTUNE_ARTIFACTS"]["valueFrom"]["secretKeyRef"] == {"name": "cnntune-storage", "key": "artifacts"}
    for job in ("cnntune-create-study", "cnntune-workers"):
        pod = _k8s("Job", job)["spec"]["template"]["spec"]
        assert not _pvc_volumes(pod), f"{job}: no volume for the artifacts by default"
        assert not any(m["mountPath"] == "/artifacts" for c in pod["containers"] for m in c.get("volumeMounts", []))
    assert not [d for d in _build(_kustomization()) if d["kind"] == "PersistentVolumeClaim"]


def test_k8s_cnntune_containers_get_the_bucket_credentials_optionally():
    """Each store's variables, from the secret; optional, so that a role (IRSA, EKS Pod Identity, GKE Workload
    Identity) works with the keys left out. The key file of gs:// is mounted where the secret says, when present."""
    secret = _k8s("Secret", "cnntune-storage")
    path = "/var/run/secrets/cnntune/gcs-key.json"
    assert path in K8S.joinpath("secret.yaml").read_text(), "secret.yaml tells where the key file is mounted"
    for job, name in (("cnntune-create-study", "create-study"), ("cnntune-workers", "worker")):
        pod = _k8s("Job", job)["spec"]["template"]["spec"]
        [container] = [c for c in pod["containers"] if c["name"] == name]
        env = {e["name"]: e for e in container["env"]}
        for var, key in CREDENTIALS.items():
            assert env[var]["valueFrom"]["secretKeyRef"] == {"name": "cnntune-storage", "key": key, "optional": True}, \
                (job, var)
        [mount] = [m for m in container["volumeMounts"] if path.startswith(m["mountPath"] + "/")]
        [volume] = [v for v in pod["volumes"] if v["name"] == mount["name"]]
        assert volume["secret"] == {"secretName": secret["metadata"]["name"], "optional": True,
                                    "items": [{"key": "gcs-key.json", "path": path.rsplit("/", 1)[1]}]}


def test_k8s_required_secret_keys_are_in_the_secret():
    secret = _k8s("Secret", "cnntune-storage")
    for doc in _build(_kustomization()):
        pod = doc.get("spec", {}).get("template", {}).get("spec", {})
        for container in pod.get("initContainers", []) + pod.get("containers", []):
            for e in container.get("env", []):
                ref = e.get("valueFrom", {}).get("secretKeyRef")
                if ref and not ref.get("optional"):
                    assert ref["name"] == "cnntune-storage" and ref["key"] in secret["stringData"], \
                        (doc["metadata"]["name"], container["name"], e["name"])
    env = {e["name"]: e for e in _k8s("Job", "cnntune-workers")["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["CNNTUNE_STORAGE"]["valueFrom"]["secretKeyRef"] == {"name": "cnntune-storage", "key": "url"}


def test_k8s_volume_alternative_mounts_the_claim_in_both_jobs():
    docs = _build(_kustomization(alternatives=True))
    assert _object(docs, "Secret", "cnntune-storage")["stringData"]["artifacts"] == "/artifacts"
    claim = _object(docs, "PersistentVolumeClaim", "cnntune-artifacts")
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"], "workers on several nodes mount it"
    for job, name in (("cnntune-create-study", "create-study"), ("cnntune-workers", "worker")):
        pod = _object(docs, "Job", job)["spec"]["template"]["spec"]
        [volume] = _pvc_volumes(pod)
        assert volume["persistentVolumeClaim"] == {"claimName": "cnntune-artifacts"}, job
        [container] = [c for c in pod["containers"] if c["name"] == name]
        assert {"name": volume["name"], "mountPath": "/artifacts"} in container["volumeMounts"], job
        assert any(v.get("secret") for v in pod["volumes"]), f"{job}: the patch keeps the other volumes"


def test_k8s_spot_patch_selects_spot_nodes_and_keeps_the_gpu_toleration():
    alternatives = _kustomization(alternatives=True)
    [entry] = [p for p in alternatives["patches"] if p["path"] == "workers-spot-patch.yaml"]
    assert entry["target"] == {"group": "batch", "version": "v1", "kind": "Job", "name": "cnntune-workers"}
    pod = _object(_build(alternatives), "Job", "cnntune-workers")["spec"]["template"]["spec"]
    spot_labels = {"cloud.google.com/gke-spot": "true", "eks.amazonaws.com/capacityType": "SPOT",
                   "karpenter.sh/capacity-type": "spot", "kubernetes.azure.com/scalesetpriority": "spot"}
    [(label, value)] = pod["nodeSelector"].items()
    assert spot_labels[label] == value, "one cloud's spot label at a time"
    text = (K8S / "workers-spot-patch.yaml").read_text()
    for label, value in spot_labels.items():
        assert re.search(rf"^\s*(# )?{re.escape(label)}: \"?{value}\"?$", text, re.M), f"{label} is offered"
    tolerations = pod["tolerations"]
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in tolerations
    assert {"key": "kubernetes.azure.com/scalesetpriority", "operator": "Equal", "value": "spot",
            "effect": "NoSchedule"} in tolerations, "AKS taints its spot nodes"
    assert {"key": "cloud.google.com/gke-spot", "operator": "Equal", "value": "true",
            "effect": "NoSchedule"} in tolerations
    # Nothing else changes: the default workers job, patched by the spot patch alone, differs only there.
    plain = _k8s("Job", "cnntune-workers")
    patched = _json_patch(plain, _load_all(K8S / "workers-spot-patch.yaml")[0])
    for field in ("nodeSelector", "tolerations"):
        patched["spec"]["template"]["spec"].pop(field)
    plain["spec"]["template"]["spec"].pop("tolerations")
    assert patched == plain


# -- every cnntune command in these files parses with the real CLI ---------------------------------------------------
def _compose_value(text: str) -> str:
    """Compose interpolation with the defaults: ``${VAR:-default}`` -> default, ``${VAR}`` -> ``VAR``."""
    return re.sub(r"\$\{(\w+)(?::?-([^}]*))?\}", lambda m: m.group(2) if m.group(2) is not None else m.group(1),
                  text)


def _after_cnntune(script: str, env: dict[str, str]) -> list[str]:
    """The arguments of the ``cnntune`` call in a shell command line, ``$VAR`` taken from ``env``."""
    words = shlex.split(re.sub(r"\$\{?(\w+)\}?", lambda m: env.get(m.group(1), m.group(1)), script))
    start = words.index("cnntune") + 1
    end = next((i for i, w in enumerate(words[start:], start) if w in ("&&", ";", "||", "|") or w.startswith(">")),
               len(words))
    return words[start:end]


def _dockerfile_commands() -> list[tuple[str, list[str]]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    found = []
    entry = re.search(r"^ENTRYPOINT (\[.*\])$", text, re.M)
    cmd = re.search(r"^CMD (\[.*\])$", text, re.M)
    if entry and yaml.safe_load(entry.group(1)) == ["cnntune"]:
        found.append(("Dockerfile ENTRYPOINT+CMD", yaml.safe_load(cmd.group(1)) if cmd else []))
    for i, line in enumerate(re.findall(r"^RUN (.*)$", text, re.M)):
        for part in re.split(r"&&|;", line):
            if re.match(r"\s*cnntune\b", part):
                found.append((f"Dockerfile RUN {i}", _after_cnntune(part, {})))
    return found


def _compose_commands() -> list[tuple[str, list[str]]]:
    found = []
    for name, service in _compose(COMPOSE)["services"].items():
        if "CNNTUNE_IMAGE" not in service.get("image", ""):
            continue
        entry = service.get("entrypoint")
        if entry is None:
            command = service["command"]
            argv = shlex.split(_compose_value(command)) if isinstance(command, str) else \
                [_compose_value(w) for w in command]
            found.append((f"compose {name}", argv))
        elif entry[:2] == ["/bin/sh", "-c"]:
            found.append((f"compose {name}", _after_cnntune(_compose_value(entry[2]), {})))
        else:
            assert entry[0] != "cnntune" or "command" not in service, name
    return found


def _k8s_commands() -> list[tuple[str, list[str]]]:
    found = []
    for path in MANIFESTS:
        for doc in _load_all(path):
            pod = doc.get("spec", {}).get("template", {}).get("spec", {})
            for c in pod.get("initContainers", []) + pod.get("containers", []):
                if not c["image"].startswith("cnntune"):
                    continue
                env = {e["name"]: e.get("value", e["name"]) for e in c.get("env", [])}
                label = f"{path.name} {c['name']}"
                if "command" not in c:
                    argv = [re.sub(r"\$\((\w+)\)", lambda m: env.get(m.group(1), m.group(1)), a) for a in c["args"]]
                    found.append((label, argv))
                else:
                    assert c["command"][:2] == ["/bin/sh", "-c"], label
                    found.append((label, _after_cnntune(c["command"][2], env)))
    return found


COMMANDS = _dockerfile_commands() + _compose_commands() + _k8s_commands()


def test_the_files_hold_the_commands_this_checks():
    labels = [label for label, _ in COMMANDS]
    assert "Dockerfile ENTRYPOINT+CMD" in labels
    subcommands = {argv[0] for _, argv in COMMANDS if argv and not argv[0].startswith("-")}
    assert {"search", "worker", "trials"} <= subcommands
    workers0 = [label for label, argv in COMMANDS if argv[:1] == ["search"]]
    assert workers0 and all("--workers" in argv and argv[argv.index("--workers") + 1] == "0"
                            for label, argv in COMMANDS if label in workers0)


@pytest.mark.parametrize("label,argv", COMMANDS, ids=[label for label, _ in COMMANDS])
def test_cnntune_command_parses(label, argv):
    """Parses the arguments as ``cnntune`` would (``typer.main.get_command``, then the subcommand's
    ``make_context``), without running the command: unknown options, missing values and wrong types fail here.
    ``space=...`` words are the positional arguments of search."""
    group = typer.main.get_command(app)
    try:
        if argv and argv[0] in group.commands:
            group.commands[argv[0]].make_context(argv[0], list(argv[1:]))
        else:
            group.make_context("cnntune", list(argv))
    except typer.Exit as exc:  # --help
        assert exc.exit_code == 0, label
    except typer.TyperException as exc:  # Click's usage errors (Typer ships its own Click)
        pytest.fail(f"{label}: cnntune {shlex.join(argv)}: {exc.format_message()}")


# -- helpers of make container-test ----------------------------------------------------------------------------------
def _pip_mounts():
    spec = importlib.util.spec_from_file_location("pip_mounts", DEPLOY / "pip_mounts.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_pip_mounts_move_local_paths_under_the_build_prefix(tmp_path):
    pip_mounts = _pip_mounts()
    index = tmp_path / "mirror" / "simple"
    index.mkdir(parents=True)
    mounts: dict[Path, str] = {}
    value = pip_mounts.relocate("extra-index-url", f"file://{index} https://example.org/simple", mounts)
    assert value == f"file://{pip_mounts.PREFIX}{index} https://example.org/simple"
    assert mounts == {index.parent: pip_mounts.PREFIX + str(index.parent)}, "an index's files lie beside it"
    assert pip_mounts.relocate("cert", "/no/such/file.pem", {}) == "/no/such/file.pem"


def test_container_test_script_is_valid_bash():
    proc = _run("bash", "-n", str(DEPLOY / "container-test.sh"))
    assert proc.returncode == 0, proc.stderr
