"""Reading and writing study files on local disk or on a URI (``s3://``, ``gs://``) through pyarrow."""

from __future__ import annotations

import pyarrow.fs as pafs


def filesystem(uri: str) -> tuple[pafs.FileSystem, str]:
    if "://" in uri:
        return pafs.FileSystem.from_uri(uri)
    return pafs.LocalFileSystem(), uri


def exists(uri: str) -> bool:
    fs, path = filesystem(uri)
    return fs.get_file_info(path).type != pafs.FileType.NotFound


def write_bytes(uri: str, data: bytes, overwrite: bool = True) -> None:
    fs, path = filesystem(uri)
    if not overwrite and fs.get_file_info(path).type != pafs.FileType.NotFound:
        raise FileExistsError(f"{uri} exists; refusing to overwrite it")
    fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
    with fs.open_output_stream(path) as stream:
        stream.write(data)


def read_bytes(uri: str) -> bytes:
    fs, path = filesystem(uri)
    with fs.open_input_stream(path) as stream:
        return stream.read()
