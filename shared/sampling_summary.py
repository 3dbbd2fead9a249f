"""The sampler's decision counters (sent_<reason>, skipped_<reason>) summed up for the dashboards.

The sampler writes them into its Health counters; the terminal table and the web dashboard read
them back from the health stream and show frames sent, frames saved and the reason mix.
"""

from __future__ import annotations

from dataclasses import dataclass, field

SENT_PREFIX = "sent_"
SKIPPED_PREFIX = "skipped_"
NOT_SAVED = ("unreadable", "gone")  # skipped because the frame could not be read, not to save money


@dataclass(frozen=True)
class SamplingSummary:
    policy: str
    sent: int
    saved: int
    sent_reasons: dict[str, int] = field(default_factory=dict)
    skipped_reasons: dict[str, int] = field(default_factory=dict)
    objects_sent: int = 0
    """distinct edge tracks the sent frames showed (0 where the edge does not track)"""

    @property
    def frames_per_object(self) -> float | None:
        return self.sent / self.objects_sent if self.objects_sent else None

    @property
    def saved_share(self) -> float:
        decided = self.sent + self.saved
        return self.saved / decided if decided else 0.0

    def line(self) -> str:
        sent = ", ".join(f"{k} {v}" for k, v in self.sent_reasons.items()) or "-"
        skipped = ", ".join(f"{k} {v}" for k, v in self.skipped_reasons.items()) or "-"
        objects = (f"; {self.objects_sent} objects sent, {self.frames_per_object:.2f} frames per object"
                   if self.frames_per_object is not None else "")
        return (f"cloud sampling ({self.policy}): {self.sent} sent, {self.saved} saved ({self.saved_share:.1%}){objects}; "
                f"sent for: {sent}; skipped as: {skipped}")

    def as_dict(self) -> dict[str, object]:
        return {"policy": self.policy, "sent": self.sent, "saved": self.saved, "saved_share": self.saved_share,
                "sent_reasons": self.sent_reasons, "skipped_reasons": self.skipped_reasons,
                "objects_sent": self.objects_sent, "frames_per_object": self.frames_per_object}


def summarize(counters: dict[str, float]) -> SamplingSummary | None:
    """None when the counters carry no decisions (an older sampler, or none made yet)."""
    sent = {k[len(SENT_PREFIX):]: int(v) for k, v in counters.items() if k.startswith(SENT_PREFIX) and v}
    skipped = {k[len(SKIPPED_PREFIX):]: int(v) for k, v in counters.items() if k.startswith(SKIPPED_PREFIX) and v}
    if not sent and not skipped:
        return None
    policy = "every_nth" if "every_nth" in sent or "not_nth" in skipped else "adaptive"
    saved = sum(v for k, v in skipped.items() if k not in NOT_SAVED)
    order = lambda items: dict(sorted(items.items(), key=lambda kv: -kv[1]))  # noqa: E731
    return SamplingSummary(policy, sum(sent.values()), saved, order(sent), order(skipped),
                           int(counters.get("objects_sent", 0)))
