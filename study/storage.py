"""Reading and writing study files on local disk or on a URI (``s3://``, ``gs://``) through pyarrow."""

from __future__ import annotations

import pyarrow.fs as pafs

from denoise_core.errors import OutputExists
from denoise_core.files import write_atomic


def filesystem(uri: str) -> tuple[pafs.FileSystem, str]:
    if "://" in uri:
        return pafs.FileSystem.from_uri(uri)
    return pafs.LocalFileSystem(), uri


def exists(uri: str) -> bool:
    fs, path = filesystem(uri)
    return fs.get_file_info(path).type != pafs.FileType.NotFound


def write_bytes(uri: str, data: bytes, overwrite: bool = True) -> None:
    """Write a whole file; on local disk through a temporary file, so a full disk leaves no half file."""
    fs, path = filesystem(uri)
    if not overwrite and fs.get_file_info(path).type != pafs.FileType.NotFound:
        raise OutputExists(f"{uri} exists; refusing to overwrite it")
    if "://" not in uri:
        write_atomic(path, data)
        return
    fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
    with fs.open_output_stream(path) as stream:
        stream.write(data)


def read_bytes(uri: str) -> bytes:
    fs, path = filesystem(uri)
    with fs.open_input_stream(path) as stream:
        return stream.read()
