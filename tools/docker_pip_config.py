"""The host's pip settings, as far as they apply inside a Docker build or container (used by tools/docker_test.sh).

    python3 -m pip config list | python3 tools/docker_pip_config.py OUTDIR

Reads `pip config list` on stdin (files and PIP_* variables alike) and writes, into OUTDIR:
  cert.pem       the CA bundle pip uses on the host (its `cert`, else REQUESTS_CA_BUNDLE / SSL_CERT_FILE, else the
                 system bundle when local CAs are installed in /usr/local/share/ca-certificates); absent if none
  build.conf     a pip configuration for `docker build --secret id=pip_conf,src=...` (cert at /run/secrets/pip_cert)
  run.conf       the same for `docker run` (cert and find-links folders mounted under /run/host-pip)
  run.mounts     "HOST_PATH<TAB>CONTAINER_PATH" lines, read-only mounts for run.conf
Kept: http(s) index-url / extra-index-url / find-links, trusted-host, timeout, retries, proxy. Local find-links
folders are mounted at run time only (a build gets no host folder). Dropped, with a note on stderr: file:// indexes
and other host paths (constraint files, client certificates). Nothing here is ever written into an image.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from pathlib import Path

KEEP = {"index-url", "extra-index-url", "find-links", "trusted-host", "timeout", "default-timeout", "retries",
        "proxy"}
RUN_PREFIX = "/run/host-pip"


def parse(text: str) -> dict[str, list[str]]:
    """`section.key='value'` lines -> {key: [values]}; later sections (the environment comes last) win."""
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        m = re.match(r"^([^.=\s]*)\.([\w-]+)=(.*)$", line.strip())
        if not m:
            continue
        key, value = m.group(2), m.group(3).strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        out[key] = value.split()
    return out


def host_cert(settings: dict[str, list[str]], environ=os.environ,
              local_cas: Path = Path("/usr/local/share/ca-certificates"),
              system_bundle: Path = Path("/etc/ssl/certs/ca-certificates.crt")) -> Path | None:
    for candidate in (settings.get("cert", [None])[0], environ.get("REQUESTS_CA_BUNDLE"), environ.get("SSL_CERT_FILE")):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    if local_cas.is_dir() and any(local_cas.rglob("*.crt")) and system_bundle.is_file():
        return system_bundle
    return None


def translate(settings: dict[str, list[str]], cert: Path | None, build_cert: str, run_cert: str):
    """(build lines, run lines, mounts, dropped)."""
    build, run, mounts, dropped = [], [], [], []
    if cert:
        build.append(f"cert = {build_cert}")
        run.append(f"cert = {run_cert}")
    for key in sorted(settings):
        if key not in KEEP:
            if key in ("constraint", "requirement", "client-cert", "build-constraint"):
                dropped.append(f"{key} = {' '.join(settings[key])} (a host file)")
            continue
        build_values, run_values = [], []
        for value in settings[key]:
            if key == "find-links" and not re.match(r"^https?://", value):
                folder = Path(value[len("file://"):] if value.startswith("file://") else value)
                if folder.is_dir():
                    target = f"{RUN_PREFIX}/find-links-{len(mounts)}"
                    mounts.append((str(folder.resolve()), target))
                    run_values.append(target)
                    dropped.append(f"find-links = {value} (mounted read-only when the container runs)")
                else:
                    dropped.append(f"find-links = {value} (not a folder)")
                continue
            if key in ("index-url", "extra-index-url") and not re.match(r"^https?://", value):
                dropped.append(f"{key} = {value} (a host path)")
                continue
            build_values.append(value)
            run_values.append(value)
        if build_values:
            build.append(f"{key} = {' '.join(build_values)}")
        if run_values:
            run.append(f"{key} = {' '.join(run_values)}")
    return build, run, mounts, dropped


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[1].startswith("-"):
        print(__doc__, file=sys.stderr)
        return 2
    out = Path(argv[1])
    out.mkdir(parents=True, exist_ok=True)
    settings = parse(sys.stdin.read())
    cert = host_cert(settings)
    mounts = []
    if cert:
        shutil.copyfile(cert, out / "cert.pem")
        mounts.append((str((out / "cert.pem").resolve()), f"{RUN_PREFIX}/cert.pem"))
    build, run, more, dropped = translate(settings, cert, "/run/secrets/pip_cert", f"{RUN_PREFIX}/cert.pem")
    mounts += more
    (out / "build.conf").write_text("[global]\n" + "".join(f"{line}\n" for line in build))
    (out / "run.conf").write_text("[global]\n" + "".join(f"{line}\n" for line in run))
    mounts.append((str((out / "run.conf").resolve()), f"{RUN_PREFIX}/pip.conf"))
    (out / "run.mounts").write_text("".join(f"{src}\t{dst}\n" for src, dst in mounts))
    for note in dropped:
        print(f"docker_pip_config: not for the build: {note}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
