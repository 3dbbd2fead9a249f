"""Write config/example.env from the services' settings models (every HYBRIDCAM_* variable).

Run after adding a setting: python scripts/write_example_env.py
tests/test_deployment.py fails when the committed file is out of date.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

from pydantic_settings import BaseSettings

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SETTINGS_MODELS = (
    ("all services", "shared.settings", "CommonSettings"),
    ("capture", "services.capture.settings", "CaptureSettings"),
    ("edge_infer", "services.edge_infer.settings", "EdgeInferSettings"),
    ("sampler", "services.sampler.settings", "SamplerSettings"),
    ("results_bridge", "services.results_bridge.settings", "ResultsBridgeSettings"),
    ("compositor", "services.compositor.settings", "CompositorSettings"),
    ("cloud commands", "cloud.settings", "CloudSettings"),
)
HEADER = """\
# hybridcam settings: copy to .env (docker compose and every service read it) and edit.
# Each line shows the default. Generated from the settings models by
# scripts/write_example_env.py; do not edit by hand.
#
# AWS credentials are never put in an image: set AWS_PROFILE / AWS_ACCESS_KEY_ID /
# AWS_SECRET_ACCESS_KEY here (or mount ~/.aws read-only) for the cloud path.
"""


def load_model(module: str, name: str) -> type[BaseSettings] | None:
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        return None


def env_value(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def render() -> str:
    lines = [HEADER]
    seen: set[str] = set()
    for title, module, name in SETTINGS_MODELS:
        model = load_model(module, name)
        if model is None:
            continue
        prefix = model.model_config.get("env_prefix", "")
        section = []
        for field_name, field in model.model_fields.items():
            variable = f"{prefix}{field_name}".upper()
            if variable in seen:
                continue
            seen.add(variable)
            default = field.get_default(call_default_factory=False) if field.default_factory is None else None
            if isinstance(default, Path) and REPO in default.parents:
                default = default.relative_to(REPO)
            if field.description:
                section.append(f"# {field.description}")
            dynamic = field.default_factory is not None
            section.append(f"# {variable}=" + ("(computed at start)" if dynamic else env_value(default)))
        if section:
            lines.append(f"\n## {title} ({module.replace('.', '/')}.py)\n")
            lines.extend(section)
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    target = REPO / "config" / "example.env"
    target.write_text(render())
    print(f"wrote {target.relative_to(REPO)}")
