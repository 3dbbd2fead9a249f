"""Offline validation of manifests against the Kubernetes OpenAPI schemas (kubernetes-validate ships them).

Strict: a field the schema does not know is an error (a typo such as `nodeselector` would otherwise
pass silently and be ignored by the cluster).
"""

from __future__ import annotations

from pathlib import Path

import yaml

from shared.errors import ConfigError


def validate_documents(documents: list[dict], kubernetes_version: str) -> list[str]:
    """One sentence per problem; an empty list when every manifest is valid."""
    try:
        import kubernetes_validate
    except ModuleNotFoundError:
        raise ConfigError("validation needs the kubernetes-validate package (pip install kubernetes-validate; "
                          "the project's dev extra has it)") from None
    problems = []
    for document in documents:
        name = f"{document.get('kind', '?')} {document.get('metadata', {}).get('name', '?')}"
        try:
            kubernetes_validate.validate(document, kubernetes_version, strict=True)
        except kubernetes_validate.ValidationError as error:
            path = ".".join(str(part) for part in error.path)
            problems.append(f"{name}: {path or 'top level'}: {error.message}")
        except (kubernetes_validate.SchemaNotFoundError, kubernetes_validate.VersionNotSupportedError) as error:
            problems.append(f"{name}: {error.message}")
    return problems


def validate_file(path: Path, kubernetes_version: str) -> list[str]:
    try:
        documents = [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]
    except (OSError, yaml.YAMLError) as error:
        return [f"cannot be read as YAML: {error}"]
    return validate_documents(documents, kubernetes_version)
