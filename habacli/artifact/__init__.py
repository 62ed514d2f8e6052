"""The haba artifact (formats/haba-artifact-v1.md): header codec, tensor codec, decoding, grid, expansion.

:mod:`.header` reads and validates a header without torch; :mod:`.codec` reads and writes whole
artifacts; :mod:`.expand` and :mod:`.grid` decode them into images. Importing this package is torch-free.
"""

from habacli.artifact.codec import HabaArtifact, load_artifact, read_metadata, save_artifact
from habacli.artifact.header import Header, parse_header, read_header

__all__ = ["HabaArtifact", "Header", "load_artifact", "parse_header", "read_header", "read_metadata", "save_artifact"]
