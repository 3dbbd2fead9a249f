"""Builds the one synthetic scene that all synthetic cameras of a site look at."""

from __future__ import annotations

from services.capture.sources import SceneRenderer
from shared.site_config import ResolvedCamera, SiteConfig


def is_synthetic(camera: ResolvedCamera) -> bool:
    return camera.source.strip().lower().startswith("synthetic")


def build_scene(site: SiteConfig, cameras: list[ResolvedCamera]) -> SceneRenderer | None:
    """A SyntheticScene whose virtual cameras have the site's geometry, or None if unused.

    ``cameras`` are the ones this process runs; the scene is always built from every
    synthetic camera of the site, so processes that run different cameras (--camera)
    agree on the motion and the ground truth.

    A master sees the whole world; a slave sees the region of the master that its
    ``covers`` entry declares, so ground truth and the director share one geometry.
    """
    if not any(is_synthetic(c) for c in cameras):
        return None
    synthetic = [c for c in site.resolved() if is_synthetic(c)]
    from services.capture.synthetic_scene import SyntheticScene, ViewRegion, VirtualCamera

    virtual = []
    for camera in synthetic:
        if camera.covers is not None:
            r = camera.covers.region
            region = ViewRegion(r.x0, r.y0, r.x1, r.y1)
        else:
            region = ViewRegion(0.0, 0.0, 1.0, 1.0)
        virtual.append(VirtualCamera(camera.id, camera.role, region, camera.width, camera.height))
    config = site.synthetic_scene
    return SyntheticScene(virtual, seed=config.seed, people=config.people, scenario=config.scenario)
