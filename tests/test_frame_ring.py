"""Frame rings across a capture restart: the block is taken over, readers follow the generation,
nothing replaced stays mapped, and a full /dev/shm is an error at start, never a SIGBUS."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

from shared.frame_ring import FrameFetcher, FrameGone, FrameRingReader, FrameRingWriter, ring_bytes
from shared.schemas import FrameRef

REPO_ROOT = Path(__file__).resolve().parents[1]
W, H, SLOTS = 64, 48, 3


def _name() -> str:
    return f"hctest_ring_{uuid.uuid4().hex[:8]}"


def _ref(name: str, slot: int, seq: int, capture_ts: float = 0.0) -> FrameRef:
    return FrameRef(camera_id="c", seq=seq, capture_ts=capture_ts, width=W, height=H, shm_name=name, slot=slot)


def _inode(name: str) -> int:
    return os.stat(f"/dev/shm/{name}").st_ino


def _mapped_deleted(name: str) -> bool:
    """This process still maps a block called ``name`` that was unlinked."""
    return any(f"/dev/shm/{name} (deleted)" in line for line in Path("/proc/self/maps").read_text().splitlines())


def _writer_killed_mid_run(name: str) -> None:
    """A real capture-like process writes into the ring and is killed -9 (no cleanup at all)."""
    code = textwrap.dedent(f"""
        import sys, time, numpy as np
        from shared.frame_ring import FrameRingWriter
        ring = FrameRingWriter({name!r}, {W}, {H}, {SLOTS})
        ring.write(np.full(({H}, {W}, 3), 7, np.uint8), 0, 0.0)
        print("written", flush=True)
        time.sleep(60)
    """)
    process = subprocess.Popen([sys.executable, "-c", code], cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None and process.stdout.readline().strip() == "written"
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)


def test_restarted_writer_takes_over_the_block_a_killed_one_left() -> None:
    name = _name()
    _writer_killed_mid_run(name)
    fetcher = FrameFetcher()
    try:
        assert (fetcher.fetch(_ref(name, 0, 0)) == 7).all()  # the killed writer's last frame is readable
        inode = _inode(name)
        writer = FrameRingWriter(name, W, H, SLOTS)
        assert writer.reused and _inode(name) == inode, "a restart must reuse the block, not make a second one"
        assert writer.generation == 2
        restarted_at = time.time()
        slot = writer.write(np.full((H, W, 3), 9, np.uint8), 0, restarted_at)
        assert (fetcher.fetch(_ref(name, slot, 0, restarted_at)) == 9).all()
        assert fetcher.reattached == 1  # the generation told the reader at once
        assert not _mapped_deleted(name)
        writer.close()
    finally:
        fetcher.close()


def test_a_ring_of_another_layout_is_retired_and_every_reader_lets_go() -> None:
    name = _name()
    old = FrameRingWriter(name, W, H, SLOTS)
    old.write(np.zeros((H, W, 3), np.uint8), 0, 0)
    busy, idle = FrameFetcher(), FrameFetcher()
    try:
        busy.fetch(_ref(name, 0, 0))
        idle.fetch(_ref(name, 0, 0))
        old.close(unlink=False)  # killed: the block stays behind
        new = FrameRingWriter(name, W * 2, H, SLOTS)  # the camera's resolution changed
        assert not new.reused
        assert idle.release_stale() == 1  # an idle reader lets go on its next sweep, without reading
        assert idle.attached() == []
        slot = new.write(np.full((H, W * 2, 3), 5, np.uint8), 1, 0)
        frame = busy.fetch(FrameRef(camera_id="c", seq=1, capture_ts=0, width=W * 2, height=H, shm_name=name, slot=slot))
        assert frame.shape == (H, W * 2, 3) and (frame == 5).all()
        assert not _mapped_deleted(name), "a replaced ring is still mapped"
        new.close()
        with pytest.raises(FrameGone):
            busy.fetch(FrameRef(camera_id="c", seq=1, capture_ts=0, width=W * 2, height=H, shm_name=name, slot=slot))
        assert not _mapped_deleted(name)
    finally:
        busy.close()
        idle.close()


def test_clean_stop_retires_the_ring_for_its_readers() -> None:
    name = _name()
    writer = FrameRingWriter(name, W, H, SLOTS)
    reader = FrameRingReader(name)
    assert not reader.stale()
    writer.close()
    assert reader.replaced() and reader.stale()
    reader.close()
    assert not Path(f"/dev/shm/{name}").exists()


def test_lapping_is_a_drop_not_a_reattach() -> None:
    name = _name()
    writer = FrameRingWriter(name, W, H, 2)
    fetcher = FrameFetcher()
    try:
        for seq in range(3):
            writer.write(np.zeros((H, W, 3), np.uint8), seq, 0)
        with pytest.raises(FrameGone):
            fetcher.fetch(_ref(name, 0, 0))
        assert fetcher.reattached == 0
    finally:
        fetcher.close()
        writer.close()


_SIZE_LIMITED_SCRIPT = """
import os, signal, subprocess, sys, time
import numpy as np
from shared.frame_ring import FrameFetcher, FrameMemoryFull, FrameRingWriter
from shared.schemas import FrameRef
W, H, SLOTS = 640, 480, 4
child = subprocess.Popen([sys.executable, "-c", (
    "import time, numpy as np; from shared.frame_ring import FrameRingWriter;"
    f"r = FrameRingWriter('hybridcam_cam', {W}, {H}, {SLOTS}); r.write(np.ones(({H}, {W}, 3), np.uint8), 0, 0);"
    "print('up', flush=True); time.sleep(60)")], stdout=subprocess.PIPE, text=True)
assert child.stdout.readline().strip() == "up"
reader = FrameFetcher()
reader.fetch(FrameRef(camera_id="cam", seq=0, capture_ts=0, width=W, height=H, shm_name="hybridcam_cam", slot=0))
child.send_signal(signal.SIGKILL); child.wait()
ring = FrameRingWriter("hybridcam_cam", W, H, SLOTS)  # the restart: this is where SIGBUS struck
for seq in range(SLOTS * 3):
    ring.write(np.full((H, W, 3), seq % 250, np.uint8), seq, time.time())
print("restart wrote", SLOTS * 3, "frames; reused", ring.reused, flush=True)
try:
    FrameRingWriter("hybridcam_big", W * 4, H * 4, SLOTS)
except FrameMemoryFull as error:
    print("full:", error, flush=True)
"""


@pytest.mark.skipif(shutil.which("unshare") is None or os.geteuid() != 0, reason="needs root and unshare")
def test_capture_restart_in_a_size_limited_dev_shm_does_not_die_with_sigbus() -> None:
    """The container case: /dev/shm holds one set of rings plus a little; a reader keeps the
    killed capture's ring mapped while capture starts again."""
    limit_kib = ring_bytes(640, 480, 4) // 1024 + 512
    command = f"mount -t tmpfs -o size={limit_kib}k tmpfs /dev/shm && exec {sys.executable} -c \"$0\""
    try:
        result = subprocess.run(["unshare", "--mount", "sh", "-c", command, _SIZE_LIMITED_SCRIPT],
                                cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.SubprocessError) as error:
        pytest.skip(f"cannot make a private /dev/shm here: {error}")
    if "mount:" in result.stderr and result.returncode != 0 and "Traceback" not in result.stderr:
        pytest.skip(f"cannot mount a private /dev/shm here: {result.stderr.strip()}")
    assert result.returncode == 0, f"exit {result.returncode} (-7 is SIGBUS):\n{result.stdout}\n{result.stderr}"
    assert "restart wrote 12 frames; reused True" in result.stdout
    assert "full: shared memory is full" in result.stdout and "STACK_FRAME_MEMORY" in result.stdout


def test_frame_memory_health_looks_at_free_space(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sys.path.insert(0, str(REPO_ROOT / "docker"))
    import frame_memory

    ring = ring_bytes(W, H, SLOTS)
    rings = {"hybridcam_a": ring, "hybridcam_b": ring}
    (tmp_path / "hybridcam_a").write_bytes(b"\0" * ring)  # one ring exists, one is still to be created
    sizes = {"total": 3 * ring, "free": 2 * ring}
    monkeypatch.setattr(frame_memory, "folder_bytes", lambda folder: (sizes["total"], sizes["free"]))
    state = frame_memory.memory_state(tmp_path, rings)
    assert (state["state"], state["rings_present"], state["free_bytes"]) == ("ok", 1, 2 * ring)
    sizes["free"] = ring + ring // 2  # the missing ring fits, a replaced one would not
    assert frame_memory.memory_state(tmp_path, rings)["state"] == "degraded"
    sizes["free"] = ring // 2  # big enough in total, but too full to create the missing ring
    full = frame_memory.memory_state(tmp_path, rings)
    assert full["state"] == "failing" and "still to create" in full["message"]
    assert frame_memory.recommended_shm_size(100 * 1024 * 1024) == "216m"  # every ring twice + 16 MiB


def test_rings_of_two_stacks_on_one_host_have_different_names_and_a_restart_finds_its_own() -> None:
    from shared.frame_ring import ring_name, ring_namespace

    one, other = ring_namespace("redis://127.0.0.1:6379/0"), ring_namespace("redis://127.0.0.1:6380/0")
    assert ring_name("wide", one) != ring_name("wide", other)
    assert ring_name("wide", one) == ring_name("wide", ring_namespace("redis://127.0.0.1:6379/0"))
    assert ring_name("wide", one).startswith("hybridcam_")


def test_a_reference_from_before_a_capture_restart_never_reads_the_new_frame() -> None:
    """seq restarts at 0 with capture: slot and seq of an old reference can match a new frame; capture_ts cannot."""
    name = _name()
    before = FrameRingWriter(name, W, H, SLOTS)
    old_slot = before.write(np.full((H, W, 3), 1, np.uint8), 0, 1_000.0)
    old_ref = _ref(name, old_slot, 0, 1_000.0)
    fetcher = FrameFetcher()
    try:
        assert (fetcher.fetch(old_ref) == 1).all()
        before.close(unlink=False)
        after = FrameRingWriter(name, W, H, SLOTS)  # the restarted capture counts from 0 again
        new_slot = after.write(np.full((H, W, 3), 2, np.uint8), 0, 2_000.0)
        assert new_slot == old_slot
        with pytest.raises(FrameGone):
            fetcher.fetch(old_ref)
        with pytest.raises(FrameGone):
            fetcher.borrow(old_ref)
        assert (fetcher.fetch(_ref(name, new_slot, 0, 2_000.0)) == 2).all()
        borrowed = fetcher.borrow(_ref(name, new_slot, 0, 2_000.0))
        assert borrowed.still_valid()
        after.close()
    finally:
        fetcher.close()
