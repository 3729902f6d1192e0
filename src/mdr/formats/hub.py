"""Hugging Face Hub or a local folder in the hub's layout: the one place that downloads.

Every hub-backed source (mMARCO, MIRACL, XQuAD-R from the hub) takes a local root option; when it
is set, files are read from ``root/<path in the repo>`` and nothing is downloaded. Otherwise the
file is fetched once with ``huggingface_hub`` (cached). Any failure becomes one ``DataError``
that names what was wanted and the option that points at a local copy instead.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TypeVar

from mdr.errors import DataError

T = TypeVar("T")


def from_hub(download: Callable[[], T], what: str, advice: str) -> T:
    """Run ``download``; on any error (offline, gated, missing file) raise one DataError."""
    try:
        return download()
    except Exception as e:  # noqa: BLE001 - the hub client raises many types; all mean "not available"
        raise DataError(
            f"could not get {what} from the Hugging Face Hub ({type(e).__name__}: {str(e).splitlines()[0][:200]}); "
            f"without network, {advice}"
        ) from None


def hub_or_local(repo: str, relative: str, root: str | None, option: str, label: str, folder: bool = False) -> str:
    """``root/relative`` when ``root`` is set (it must exist), else ``relative`` of the dataset repo
    ``repo`` from the hub: one file, or with ``folder`` every file below that folder."""
    if root is not None:
        path = os.path.join(root, relative)
        if not (os.path.isdir(path) if folder else os.path.isfile(path)):
            raise DataError(f"{label} {'folder' if folder else 'file'} missing: {path}")
        return path
    from huggingface_hub import hf_hub_download, snapshot_download

    if folder:
        download = lambda: os.path.join(snapshot_download(repo, repo_type="dataset", allow_patterns=[f"{relative}/*"]), relative)  # noqa: E731
    else:
        download = lambda: hf_hub_download(repo, relative, repo_type="dataset")  # noqa: E731
    return from_hub(download, f"{repo}/{relative}", f"set {option} to a local copy in the same layout")
