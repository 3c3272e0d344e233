"""Hands the host's pip settings to a container build, read-only, without copying anything into the image.

``python pip_mounts.py OUT_DIR`` writes ``OUT_DIR/pip.conf``, the host's effective pip configuration (``pip config
list``: files and ``PIP_*`` variables), with every local file or folder it names (CA bundle, constraints,
find-links folders, ``file://`` indexes) moved under ``/run/host-pip``, and prints the ``podman build`` arguments
that mount that file and those paths under ``/run/host-pip`` and point the Dockerfile's ``PIP_CONFIG_FILE`` build
argument at the file. Mounting the paths at their own places would collide with what the image installs
(``ca-certificates`` rewrites ``/etc/ssl/certs``).
Without a configured CA bundle pip is given the host's system bundle, the one a current pip trusts on the host.

Used by ``deploy/container-test.sh``, so a build machine that reaches its package index only through its own
configuration (a mirror, a proxy's certificate) builds the image the way it installs the project.
"""

from __future__ import annotations

import configparser
import subprocess
import sys
from pathlib import Path

PREFIX = "/run/host-pip"
CONF_IN_BUILD = PREFIX + "/pip.conf"
SYSTEM_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
# pip options whose values are local paths or file:// URLs.
_PATH_OPTIONS = {"cert", "client-cert", "constraint", "find-links", "index-url", "extra-index-url", "requirement"}


def host_settings() -> dict[str, str]:
    """The host's pip settings, environment variables over files (pip's own precedence)."""
    listing = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True,
                             check=True).stdout
    files: dict[str, str] = {}
    env: dict[str, str] = {}
    for line in listing.splitlines():
        scoped, sep, value = line.partition("=")
        if sep:
            (env if scoped.startswith(":env:") else files)[scoped.rsplit(".", 1)[-1]] = value.strip().strip("'\"")
    settings = {**files, **env}
    if "cert" not in settings and SYSTEM_CA_BUNDLE.is_file():
        settings["cert"] = str(SYSTEM_CA_BUNDLE)
    return settings


def relocate(key: str, value: str, mounts: dict[Path, str]) -> str:
    """The option's value with its existing local paths moved under PREFIX; records what to mount. A ``file://``
    index brings its parent folder along: its pages link to files beside it."""
    words = []
    for word in value.split():
        is_url = word.startswith("file://")
        path = Path(word[len("file://"):] if is_url else word)
        if path.is_absolute() and path.exists():
            source = path.parent if is_url and key.endswith("index-url") else path
            mounts[source] = PREFIX + str(source)
            word = ("file://" if is_url else "") + PREFIX + str(path)
        words.append(word)
    return " ".join(words)


def main(out_dir: str) -> None:
    settings = host_settings()
    mounts: dict[Path, str] = {}
    for key in settings:
        if key in _PATH_OPTIONS:
            settings[key] = relocate(key, settings[key], mounts)
    conf = configparser.ConfigParser(interpolation=None)
    conf["global"] = settings
    out = Path(out_dir).resolve() / "pip.conf"
    with out.open("w") as fh:
        conf.write(fh)
    print(f"--build-arg=PIP_CONFIG_FILE={CONF_IN_BUILD}")
    print(f"--volume={out}:{CONF_IN_BUILD}:ro")
    for source, target in mounts.items():
        print(f"--volume={source.resolve()}:{target}:ro")


if __name__ == "__main__":
    main(sys.argv[1])
