"""The container and cluster files, checked offline: the Dockerfile lints clean (hadolint), the compose files are valid
(docker-compose's schema where Debian's docker-compose is installed, podman-compose's own reading always) and ask for
what a GPU cluster needs, the Kubernetes manifests validate strictly against the API schemas (kubernetes-validate),
and every ``cnntune`` command in these files parses with the real CLI. Building and running the image is
``make container-test`` (deploy/container-test.sh)."""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import shutil
import subprocess
import sys
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
MANIFESTS = sorted(p for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")


def _tool(name: str) -> str:
    path = BIN / name
    assert path.exists(), f"{name} is missing: install the dev extra (make install)"
    return str(path)


def _run(*argv: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    # The files' own defaults, not the caller's CNNTUNE_* settings.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CNNTUNE_", "COMPOSE_"))}
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=120, env=env)


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


def test_dockerfile_gpu_by_default_non_root_volumes_entrypoint():
    text = DOCKERFILE.read_text()
    assert re.search(r"^ARG BASE=tensorflow/tensorflow:[\d.]+-gpu$", text, re.M)
    assert re.search(r"^ARG EXTRAS=postgres$", text, re.M)
    user = re.findall(r"^USER (\S+)", text, re.M)
    assert user and not user[-1].startswith(("root", "0")), "the image must not run as root"
    assert 'ENTRYPOINT ["cnntune"]' in text
    assert re.search(r'^VOLUME \[.*"/data".*"/artifacts".*\]', text, re.M)
    assert re.search(r"^WORKDIR /", text, re.M)
    ignore = (ROOT / ".dockerignore").read_text().split()
    assert ignore[ignore.index("*"):] and "!tuner/" in ignore and "!search_spaces/" in ignore


# -- compose ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("profile", [[], ["--profile", "db"]], ids=["external-db", "bundled-db"])
def test_compose_file_is_valid_for_docker_compose(profile):
    tool = shutil.which("docker-compose")
    if tool is None:
        pytest.skip("Debian's docker-compose is not installed (make container-test installs it); "
                    "test_compose_files_are_read_by_podman_compose checks the files without it")
    proc = _run(tool, "-f", str(COMPOSE), *profile, "config", "-q")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_compose_files_are_read_by_podman_compose():
    """podman-compose merges the CPU override (``!reset`` included) the way Docker Compose 2.24+ does; ``--dry-run``
    reads the files without a podman binary."""
    proc = _run(_tool("podman-compose"), "--dry-run", "-f", "compose.yaml", "-f", "compose.cpu.yaml", "config",
                cwd=DEPLOY)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    merged = yaml.safe_load(proc.stdout)["services"]
    assert "postgres" not in merged, "the db profile is off by default"
    assert set(merged) == {"storage-ready", "create-study", "worker"}
    for name, service in merged.items():
        assert service["network_mode"] == "host", name
        assert service["image"] == "cnntune:cpu", name
    assert "resources" not in merged["worker"].get("deploy", {}), "the CPU override drops the GPU reservation"


def test_compose_gpu_workers_shared_volumes_and_order():
    services = _compose(COMPOSE)["services"]
    assert services["postgres"]["profiles"] == ["db"]
    assert any(v.startswith("pgdata:") for v in services["postgres"]["volumes"])
    worker = services["worker"]
    assert worker["deploy"]["replicas"] == "${CNNTUNE_WORKERS:-2}"
    assert worker["deploy"]["resources"]["reservations"]["devices"] == [
        {"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
    assert worker["depends_on"] == {"create-study": {"condition": "service_completed_successfully"}}
    assert services["create-study"]["depends_on"] == {"storage-ready": {"condition": "service_completed_successfully"}}
    for name in ("storage-ready", "create-study", "worker"):
        assert "artifacts:/artifacts" in services[name]["volumes"], name
    assert {"artifacts", "pgdata"} <= set(_compose(COMPOSE)["volumes"])


# -- Kubernetes ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("version", ["1.29.0", None], ids=["k8s-1.29", "k8s-latest"])
def test_k8s_manifests_validate_strictly(version):
    argv = [_tool("kubernetes-validate"), "--strict", "--quiet"] + (["-k", version] if version else [])
    proc = _run(*argv, *map(str, MANIFESTS))
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_k8s_kustomization_lists_every_manifest():
    listed = yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"]
    assert sorted(listed) == sorted(p.name for p in MANIFESTS)


def _k8s(kind: str, name: str) -> dict:
    found = [d for p in MANIFESTS for d in _load_all(p) if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}"
    return found[0]


def test_k8s_indexed_gpu_workers_survive_preemption():
    job = _k8s("Job", "cnntune-workers")["spec"]
    assert job["completionMode"] == "Indexed" and job["parallelism"] == job["completions"]
    assert job["backoffLimit"] >= 10 * job["completions"], "preempted pods must be able to come back"
    worker = job["template"]["spec"]["containers"][0]
    assert worker["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert "worker-$(JOB_COMPLETION_INDEX)" in worker["args"]
    assert {"name": "artifacts", "mountPath": "/artifacts"} in worker["volumeMounts"]
    claim = job["template"]["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"]
    assert _k8s("PersistentVolumeClaim", claim)["spec"]["accessModes"] == ["ReadWriteMany"]


def test_k8s_storage_url_comes_from_the_secret():
    secret = _k8s("Secret", "cnntune-storage")
    for job in ("cnntune-create-study", "cnntune-workers"):
        pod = _k8s("Job", job)["spec"]["template"]["spec"]
        for container in pod.get("initContainers", []) + pod["containers"]:
            env = {e["name"]: e for e in container["env"]}
            ref = env["CNNTUNE_STORAGE"]["valueFrom"]["secretKeyRef"]
            assert ref["name"] == "cnntune-storage" and ref["key"] in secret["stringData"], (job, container["name"])


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
    ``make_context``), without running the command: unknown options, missing values and wrong types fail here. ``space=...`` words are the positional arguments of search."""
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
