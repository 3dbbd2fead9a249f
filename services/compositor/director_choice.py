"""Builds the director the settings ask for: the action director (default) or the old 'everyone visible' rule."""

from __future__ import annotations

from services.compositor.director import Director, DirectorTiming
from services.compositor.settings import CompositorSettings
from services.compositor.shot_grammar import ActionDirector, ShotGrammar
from services.compositor.virtual_camera import PanZoomLimits
from shared.site_config import ResolvedCamera


def timing_from(settings: CompositorSettings) -> DirectorTiming:
    return DirectorTiming(
        min_shot_s=settings.compositor_min_shot_s,
        confirm_s=settings.compositor_confirm_s,
        cooldown_s=settings.compositor_cooldown_s,
        switch_margin=settings.compositor_switch_margin,
        idle_after_s=settings.compositor_idle_after_s,
        detection_timeout_s=settings.compositor_detection_timeout_s,
    )


def grammar_from(settings: CompositorSettings) -> ShotGrammar:
    return ShotGrammar(
        min_shot_s=settings.compositor_min_shot_s,
        target_shot_s=settings.compositor_target_shot_s,
        max_shot_s=settings.compositor_max_shot_s,
        confirm_s=settings.compositor_confirm_s,
        jump_cut_iou=settings.compositor_jump_cut_iou,
        variety_bonus=settings.compositor_variety_bonus,
        idle_after_s=settings.compositor_idle_after_s,
        detection_timeout_s=settings.compositor_detection_timeout_s,
    )


def limits_from(settings: CompositorSettings) -> PanZoomLimits:
    return PanZoomLimits(
        max_speed=settings.compositor_pan_max_speed,
        max_accel=settings.compositor_pan_max_accel,
        dead_zone=settings.compositor_pan_dead_zone,
        max_upscale=settings.compositor_virtual_max_upscale,
    )


def action_director(settings: CompositorSettings, cameras: list[ResolvedCamera]) -> ActionDirector:
    return ActionDirector(cameras, grammar_from(settings), settings.compositor_width, limits_from(settings),
                          watch_labels=settings.watch_label_set, virtual=settings.compositor_virtual_camera)


def build_director(settings: CompositorSettings, cameras: list[ResolvedCamera]) -> ActionDirector | Director:
    if settings.compositor_director == "everyone":
        return Director(cameras, timing_from(settings))
    return action_director(settings, cameras)
