"""A cache of decoded images as safetensors files, so epoch two (and run two) never decodes again.

Entries live under `$LEANNET_CACHE` (default `~/.cache/leannet`) in `data/`, keyed by the source
name, the resolved path and the files' modification times; a changed dataset gets a new key.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import torch
from safetensors.torch import load_file, save_file
from safetensors import safe_open


def cache_dir() -> Path:
    """The root of leannet's cache: `$LEANNET_CACHE` or `~/.cache/leannet`."""
    env = os.environ.get("LEANNET_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "leannet"


def cache_key(*parts: Any) -> str:
    """A short stable hash of JSON-able parts (source name, path, mtimes, options)."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def cached_tensors(source: str, key: str,
                   build: Callable[[], tuple[dict[str, torch.Tensor], dict[str, str]]]
                   ) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Return `(tensors, metadata)` from the cache entry `source-key`, building and storing it once.

    A cache that cannot be written (read-only home) is skipped silently: caching is an optimisation.
    """
    path = cache_dir() / "data" / f"{source}-{key}.safetensors"
    if path.is_file():
        try:
            with safe_open(str(path), framework="pt") as handle:
                metadata = dict(handle.metadata() or {})
            return load_file(str(path)), metadata
        except Exception:  # a damaged entry is rebuilt below
            pass
    tensors, metadata = build()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        os.close(fd)
        save_file({k: v.contiguous() for k, v in tensors.items()}, tmp, metadata=metadata)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except OSError:
        pass
    return tensors, metadata
