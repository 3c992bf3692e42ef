"""MkDocs hook: the site serves the repository's own openapi.yaml, never a copy of it.

The HTTP API page renders it with Swagger UI (``<swagger-ui src="openapi.yaml"/>``), so
the contract shown is the file the service serves at ``GET /openapi.yaml`` and the tests
check, taken from the repository root at every build.
"""

from __future__ import annotations

from pathlib import Path

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files

SPEC = "openapi.yaml"


def on_files(files: Files, config: MkDocsConfig) -> Files:
    root = Path(config.config_file_path).resolve().parent
    files.append(File.generated(config, SPEC, abs_src_path=str(root / SPEC)))
    return files
