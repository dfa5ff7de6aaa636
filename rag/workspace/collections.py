"""Collections: named document sets, each with its own documents folder and index.

The "default" collection is the corpus and index of `Config` (seeds/ and index/seeds unless set
otherwise), so nothing changes for someone who never names one. Every other collection lives
in DATA_DIR/collections/NAME/: `collection.json`, `documents/` (where the page's uploads go)
and `index/`. `rag index --collection NAME PATHS…` indexes files from anywhere; they stay where
they are, and deleting the collection never touches them, only its own folder.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

from .. import store
from ..config import DEFAULT_COLLECTION, Config, collection_name
from ..errors import RagError

INFO = "collection.json"


@dataclass(frozen=True)
class Collection:
    """A named document set: where its uploads go and where its index is."""

    name: str
    corpus: Path
    index_dir: Path
    created: str = ""

    @property
    def built(self) -> bool:
        return store.current_folder(self.index_dir) is not None

    def to_dict(self) -> dict:
        return {**asdict(self), "corpus": str(self.corpus), "index_dir": str(self.index_dir)}


def folder(config: Config, name: str) -> Path:
    return Path(config.data_dir) / "collections" / collection_name(name)


def config_for(config: Config, name: str | None) -> Config:
    """The settings of collection `name`, from the default collection's `config`."""
    return config.with_(collection=collection_name(name))


def get(config: Config, name: str | None) -> Collection:
    """Collection `name` (raises RagError when there is none of that name)."""
    name = collection_name(name)
    c = config_for(config, name)
    if name == DEFAULT_COLLECTION:
        return Collection(name, Path(c.corpus), Path(c.index_dir))
    info = folder(config, name) / INFO
    try:
        created = json.loads(info.read_text(encoding="utf-8")).get("created", "")
    except FileNotFoundError:
        known = ", ".join(x.name for x in listed(config))
        raise RagError(
            f"there is no collection {name!r} (collections: {known}): create it with "
            f"`rag collections create {name}` or `rag index --collection {name} PATHS…`"
        ) from None
    except (OSError, ValueError) as exc:
        raise RagError(f"the collection file {info} is unreadable ({exc})") from exc
    return Collection(name, Path(c.corpus), Path(c.index_dir), created)


def listed(config: Config) -> list[Collection]:
    """The default collection, then the others by name."""
    found = [get(config, DEFAULT_COLLECTION)]
    root = Path(config.data_dir) / "collections"
    for info in sorted(root.glob(f"*/{INFO}")) if root.is_dir() else []:
        try:
            found.append(get(config, info.parent.name))
        except RagError:
            continue  # a folder that is not a collection's (renamed by hand): not listed
    return found


def exists(config: Config, name: str) -> bool:
    name = collection_name(name)
    return name == DEFAULT_COLLECTION or (folder(config, name) / INFO).is_file()


def create(config: Config, name: str, exist_ok: bool = False) -> Collection:
    """Make collection `name`: its folder, its empty documents folder and its record."""
    name = collection_name(name)
    if exists(config, name):
        if exist_ok:
            return get(config, name)
        raise RagError(f"there is already a collection {name!r}")
    home = folder(config, name)
    (home / "documents").mkdir(parents=True, exist_ok=True)
    record = {"name": name, "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
    partial = home / f".{INFO}.{uuid.uuid4().hex[:8]}"
    partial.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    os.replace(partial, home / INFO)  # the collection exists once this file does
    return get(config, name)


def delete(config: Config, name: str) -> Collection:
    """Delete collection `name`: its index and its documents folder (files indexed from
    elsewhere are not touched). The default collection cannot be deleted."""
    found = get(config, name)
    if found.name == DEFAULT_COLLECTION:
        raise RagError("the default collection cannot be deleted")
    home = folder(config, found.name)
    with store.rebuild_lock(found.index_dir):  # not while a rebuild is writing into it
        # Renamed first: from this moment the collection is gone as a whole, even if removing
        # the files is interrupted.
        gone = home.parent / f".deleted-{found.name}-{uuid.uuid4().hex[:8]}"
        os.rename(home, gone)
    shutil.rmtree(gone, ignore_errors=True)
    return found
