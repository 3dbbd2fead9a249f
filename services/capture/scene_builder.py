"""Builds the one synthetic scene that all synthetic cameras of a site look at."""

from __future__ import annotations

from shared.site_config import ResolvedCamera, SiteConfig


def is_synthetic(camera: ResolvedCamera) -> bool:
    return camera.source.strip().lower().startswith("synthetic")


def build_scene(site: SiteConfig, cameras: list[ResolvedCamera]) -> object | None:
    """A SyntheticScene whose virtual cameras have the site's geometry, or None if unused.

    A master sees the whole world; a slave sees the region of the master that its
    ``covers`` entry declares, so ground truth and the director share one geometry.
    """
    synthetic = [c for c in cameras if is_synthetic(c)]
    if not synthetic:
        return None
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
