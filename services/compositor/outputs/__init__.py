"""Program outputs behind one tiny interface (:class:`ProgramOutput`), one small module each."""

from __future__ import annotations

from services.compositor.outputs.program_output import ProgramOutput

__all__ = ["ProgramOutput"]
