"""The file stream kind: CSV and Excel files dropped in a folder (local now; SFTP or object storage
plug in as a `Location`). Importing it registers the kind and its spec model."""
from __future__ import annotations

from connectors.base import register_kind
from connectors.files.spec import FileSourceSpec, FileStreamSpec
from connectors.files.stream import FileSourceStream
from connectors.spec import register_spec_kind

register_spec_kind("file", FileSourceSpec)
register_kind("file", FileSourceStream)

__all__ = ["FileSourceSpec", "FileSourceStream", "FileStreamSpec"]
