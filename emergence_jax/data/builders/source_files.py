"""Locate a dataset's original files: in a local `manual_dir` if they are there, else by download.

Every builder in this package reads the files exactly as their authors publish them. A user
without network access places those files (the archive, or its extracted contents) in a folder
and passes it as `manual_dir`; otherwise `dl_manager.download` fetches the public URL.
"""

from __future__ import annotations

import shutil
import tarfile
import zipfile
from collections.abc import Callable

import tensorflow_datasets as tfds
from etils import epath

from emergence_jax.errors import UserError


def manual_dir_or_none(dl_manager: tfds.download.DownloadManager) -> epath.Path | None:
    """The user's manual folder if it exists and is not empty, else None."""
    try:
        return dl_manager.manual_dir
    except (AssertionError, ValueError):
        return None


def find_root(folder: epath.Path, is_root: Callable[[epath.Path], bool], max_depth: int = 4) -> epath.Path | None:
    """The shallowest folder under `folder` (itself included) for which `is_root` holds, searched
    breadth-first in sorted order so the answer is deterministic."""
    level = [folder]
    for _ in range(max_depth + 1):
        next_level = []
        for candidate in level:
            if is_root(candidate):
                return candidate
            next_level.extend(sorted(child for child in candidate.iterdir() if child.is_dir()))
        level = next_level
    return None


def extract_archive(archive: epath.Path, extract_root: epath.Path) -> epath.Path:
    """Unpack a .tar/.tar.gz/.zip archive under `extract_root` (once) and return its folder.

    TFDS's own `dl_manager.extract` needs TensorFlow (tensorflow/datasets#11058), so archives are
    unpacked with the standard library: tar members through the "data" filter (no absolute paths,
    links out of the folder or device files), zip members with their paths sanitised. The folder
    appears only when complete (unpacked into a temporary name, then renamed).
    """
    destination = extract_root / f"PY.{archive.name}"
    if destination.exists():
        return destination
    partial = extract_root / f"incomplete.{archive.name}"
    if partial.exists():
        shutil.rmtree(partial)
    partial.mkdir(parents=True)
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as opened:
                opened.extractall(partial)
        else:
            with tarfile.open(archive) as opened:
                opened.extractall(partial, filter="data")
    except (tarfile.TarError, zipfile.BadZipFile, OSError) as err:
        shutil.rmtree(partial, ignore_errors=True)
        raise UserError(f"{archive}: cannot unpack this archive ({err}); replace it with the original file") from err
    partial.rename(destination)
    return destination


def locate_source(
    dl_manager: tfds.download.DownloadManager,
    *,
    dataset: str,
    is_root: Callable[[epath.Path], bool],
    archive_names: tuple[str, ...],
    url: str,
) -> epath.Path:
    """Folder holding the original files.

    Order: the extracted files under `manual_dir`; else an original archive (`archive_names`)
    lying in `manual_dir`; else the archive downloaded from `url` (TFDS's downloader, which needs
    no TensorFlow for HTTP). Archives are unpacked under the TFDS download folder.
    """
    extract_root = epath.Path(dl_manager.download_dir) / "extracted"
    manual = manual_dir_or_none(dl_manager)
    if manual is not None:
        root = find_root(manual, is_root)
        if root is not None:
            return root
        for name in archive_names:
            archive = manual / name
            if archive.is_file():
                root = find_root(extract_archive(archive, extract_root), is_root)
                if root is None:
                    raise UserError(f"{archive}: this archive does not hold the {dataset} files; replace it with the original one")
                return root
    try:
        downloaded = epath.Path(dl_manager.download(url))
    except Exception as err:  # noqa: BLE001 - any download failure means the same thing to the user
        raise UserError(
            f"{dataset}: the original files are not in manual_dir ({manual}) and downloading {url} failed "
            f"({type(err).__name__}); put {' or '.join(archive_names)} there and retry"
        ) from err
    root = find_root(extract_archive(downloaded, extract_root), is_root)
    if root is None:
        raise UserError(f"{dataset}: the archive downloaded from {url} ({downloaded}) does not hold the expected files")
    return root


def locate_files(
    dl_manager: tfds.download.DownloadManager, *, dataset: str, urls: dict[str, str]
) -> dict[str, epath.Path]:
    """Path of each original file, keyed by its published file name (the last part of its URL).

    The shallowest folder under `manual_dir` that holds all of them under those exact names is
    used as it is; otherwise all of them are downloaded from `urls`.
    """
    manual = manual_dir_or_none(dl_manager)
    if manual is not None:
        root = find_root(manual, lambda folder: all((folder / name).is_file() for name in urls))
        if root is not None:
            return {name: root / name for name in urls}
    try:
        downloaded = dl_manager.download(urls)
    except Exception as err:  # noqa: BLE001 - any download failure means the same thing to the user
        raise UserError(
            f"{dataset}: {', '.join(urls)} are not all in manual_dir ({manual}) and downloading them failed "
            f"({type(err).__name__}); put the original files there and retry"
        ) from err
    return {name: epath.Path(path) for name, path in downloaded.items()}
