"""Frame sources and the latest-frame grabber, without a camera."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from edge.errors import DeviceUnavailableError, ImageFileError, MissingDependencyError
from edge.sources.base import FrameSource
from edge.sources.camera import LatestFrameGrabber, Picamera2Source, open_frame_source
from edge.sources.replay import ImageSource, VideoFileSource, open_video_replay


def write_video(path, frames: int = 10, size=(64, 48), fps: float = 10.0):
    cv2 = pytest.importorskip("cv2")
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, size)
    for i in range(frames):
        writer.write(np.full((size[1], size[0], 3), 20 * i % 256, np.uint8))
    writer.release()
    return path


def test_image_source_returns_each_image_once_then_none():
    with ImageSource([np.zeros((4, 4), np.uint8), np.ones((4, 4, 3), np.uint8)]) as src:
        assert src.read().shape == (4, 4)
        assert src.read().shape == (4, 4)
        assert src.read() is None and src.exhausted
    src.close()  # idempotent
    with pytest.raises(DeviceUnavailableError, match="closed"):
        src.read()


def test_video_file_replay(tmp_path):
    path = write_video(tmp_path / "v.avi", frames=10)
    with VideoFileSource(path) as video:
        assert video.fps == pytest.approx(10.0)
        frames = []
        while (f := video.read()) is not None:
            frames.append(f)
    assert len(frames) == 10 and frames[0].shape == (48, 64) and frames[0].dtype == np.uint8
    assert "closed" in repr(video)


def test_missing_or_bad_video_names_the_file(tmp_path):
    pytest.importorskip("cv2")
    with pytest.raises(ImageFileError, match="nope.mp4"):
        VideoFileSource(tmp_path / "nope.mp4")
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video")
    with pytest.raises(ImageFileError, match="bad.mp4"):
        src = VideoFileSource(bad)
        src.read()


class FakeCamera:
    """Picamera2 look-alike recording the calls the adapter makes."""

    instances: list[FakeCamera] = []

    def __init__(self, num=0):
        self.calls = [("init", num)]
        FakeCamera.instances.append(self)

    def create_video_configuration(self, main, lores):
        self.calls.append(("config", main, lores))
        return {"main": main, "lores": lores}

    def configure(self, config):
        self.calls.append(("configure",))

    def start(self):
        self.calls.append(("start",))

    def capture_array(self, stream):
        self.calls.append(("capture", stream))
        w, h = 320, 240
        yuv = np.zeros((h * 3 // 2, 384), np.uint8)  # stride 384 > width 320
        yuv[:h, :w] = 77
        return yuv

    def stop(self):
        self.calls.append(("stop",))

    def close(self):
        self.calls.append(("close",))


def test_picamera2_adapter_reads_the_lores_y_plane():
    FakeCamera.instances.clear()
    with Picamera2Source(0, picamera2_class=FakeCamera) as src:
        frame = src.read()
    assert frame.shape == (240, 320) and (frame == 77).all()
    cam = FakeCamera.instances[0]
    assert ("config", {"size": (640, 480), "format": "XRGB8888"},
            {"size": (320, 240), "format": "YUV420"}) in cam.calls
    assert ("capture", "lores") in cam.calls
    assert cam.calls[-2:] == [("stop",), ("close",)]


def test_picamera2_missing_names_the_apt_package():
    pytest.importorskip("cv2")
    try:
        import picamera2  # noqa: F401
    except ImportError:
        pass
    else:  # pragma: no cover - on a Pi
        pytest.skip("picamera2 is installed here")
    with pytest.raises(MissingDependencyError, match="apt install python3-picamera2"):
        Picamera2Source().read()


def test_backend_choice_argument_then_config(monkeypatch):
    from edge.config import load_config
    from edge.errors import ConfigError

    config = load_config(env={"EMOTION_EDGE_CAMERA_SOURCE": "picamera2"})
    assert isinstance(open_frame_source(config.camera), Picamera2Source)
    assert type(open_frame_source(config.camera, backend="opencv")).__name__ == \
        "OpenCVCaptureSource"
    with pytest.raises(ConfigError, match="EMOTION_EDGE_CAMERA_SOURCE"):
        load_config(env={"EMOTION_EDGE_CAMERA": "picamera2"})

    with pytest.raises(ConfigError, match="webcam"):
        open_frame_source(backend="webcam")


class FlakySource(FrameSource):
    """Delivers frames, fails ``fail_times`` times, then recovers."""

    name = "flaky"

    def __init__(self, fail_after: int, fail_times: int) -> None:
        super().__init__()
        self.n = 0
        self.fail_after, self.fail_times = fail_after, fail_times
        self.resets = 0

    def _read(self):
        self.n += 1
        time.sleep(0.001)
        if self.fail_after < self.n <= self.fail_after + self.fail_times:
            raise DeviceUnavailableError("camera unplugged")
        return np.full((4, 4), self.n % 256, np.uint8)

    def reset(self):
        self.resets += 1


def test_grabber_keeps_latest_counts_drops_and_survives_failures():
    src = FlakySource(fail_after=20, fail_times=3)
    sleeps = []
    grabber = LatestFrameGrabber(src, retry_initial_s=0.01, retry_max_s=0.04,
                                 sleep=lambda s: (sleeps.append(s), time.sleep(0.001)))
    with grabber:
        assert grabber.wait_for_frame(2.0) is not None
        deadline = time.monotonic() + 5
        while grabber.frames < 60 and time.monotonic() < deadline:
            time.sleep(0.01)
        latest = grabber.latest()
    assert grabber.frames >= 60
    assert grabber.failures == 3 and src.resets == 3
    assert grabber.last_error and "unplugged" in grabber.last_error
    assert grabber.available  # recovered
    assert [s for s in sleeps if s >= 0.01] == [0.01, 0.02, 0.04]  # exponential, capped
    assert grabber.dropped > 0  # nobody asked for most frames
    assert latest is not None and latest.shape == (4, 4)
    assert "frames=" in repr(grabber)
    grabber.close()  # idempotent


def test_grabber_reports_unavailable_while_camera_is_gone():
    gone = threading.Event()

    class Dead(FrameSource):
        name = "dead"

        def _read(self):
            gone.set()
            raise DeviceUnavailableError("no camera")

    grabber = LatestFrameGrabber(Dead(), retry_initial_s=0.01, retry_max_s=0.02).start()
    try:
        assert gone.wait(2.0)
        time.sleep(0.05)
        assert not grabber.available and grabber.latest() is None
    finally:
        grabber.close()


def test_grabber_stops_at_the_end_of_a_replay(tmp_path):
    path = write_video(tmp_path / "v.avi", frames=5)
    with LatestFrameGrabber(VideoFileSource(path)) as grabber:
        deadline = time.monotonic() + 5
        while not grabber.exhausted and time.monotonic() < deadline:
            time.sleep(0.01)
    assert grabber.exhausted and grabber.frames == 5


def test_a_broken_camera_library_is_one_line_not_a_traceback(tmp_path, monkeypatch):
    # Bookworm: apt's simplejpeg built for numpy 1.24 under pip's numpy 2 raises ValueError.
    from edge.optional import import_optional

    (tmp_path / "brokencam.py").write_text(
        "raise ValueError('numpy.dtype size changed, may indicate binary incompatibility')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(MissingDependencyError, match="brokencam is installed but cannot be "
                       "imported.*dtype size changed.*the fix"):
        import_optional("brokencam", "the fix")


def test_the_grabber_stops_retrying_a_camera_library_that_is_missing():
    class NoLibrary(FrameSource):
        name = "picamera2:0"
        reads = 0

        def _read(self):
            NoLibrary.reads += 1
            raise MissingDependencyError("picamera2 is not installed; apt install python3-picamera2")

    grabber = LatestFrameGrabber(NoLibrary(), retry_initial_s=0.01, retry_max_s=0.01).start()
    grabber._thread.join(timeout=5)
    assert not grabber._thread.is_alive() and NoLibrary.reads == 1
    assert not grabber.available and "apt install" in grabber.last_error
    grabber.close()


def test_a_damaged_frame_is_skipped_and_told_not_the_end_of_the_video(tmp_path, caplog):
    """One undecodable frame in the middle used to end the video there, silently."""
    cv2 = pytest.importorskip("cv2")
    path = tmp_path / "v.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (64, 48))
    for i in range(30):
        writer.write(np.full((48, 64, 3), 8 * i, np.uint8))
    writer.release()
    data = bytearray(path.read_bytes())
    starts = [i for i in range(len(data) - 1) if data[i:i + 3] == b"\xff\xd8\xff"]
    assert len(starts) == 30
    hit, end = starts[15], starts[16] - 16
    data[hit:end] = bytes(end - hit)  # frame 15's JPEG: the chunk stays, the image is gone
    path.write_bytes(bytes(data))
    with VideoFileSource(path) as video:
        levels = []
        while (frame := video.read()) is not None:
            levels.append(int(round(float(frame.mean()) / 8)))
    assert levels == [i for i in range(30) if i != 15]
    assert video.damaged == 1 and "could not be decoded and were skipped" in caplog.text


def test_a_variable_frame_rate_video_is_replayed_by_its_own_times(tmp_path):
    """Phones record at a variable frame rate: frame index / fps drifted from the sound."""
    import fractions

    av = pytest.importorskip("av")
    path = tmp_path / "vfr.mp4"
    tb = fractions.Fraction(1, 1000)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=30)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.codec_context.time_base = stream.time_base = tb
        t = 0
        for i in range(30):  # 10 frames 100 ms apart, then 20 frames 20 ms apart
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 8 * i, np.uint8),
                                               format="bgr24")
            frame.pts, frame.time_base = t, tb
            t += 100 if i < 10 else 20
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    with VideoFileSource(path) as video:
        times = []
        while video.read() is not None:
            times.append(round(video.time_s, 3))
    assert times[:3] == [0.0, 0.1, 0.2] and times[10:13] == [1.0, 1.02, 1.04]
    replay = open_video_replay(path)
    try:
        level = round(float(replay.latest(1.2).mean()) / 8)  # 1.2 s = frame 10 + 10
        assert level == 20, level
    finally:
        replay.close()


@pytest.mark.parametrize("degrees", [90, 180, 270])
def test_camera_rotate_turns_every_frame(degrees):
    """A camera mounted upside down: faces are found upside down and misread without it."""
    from edge.sources.camera import RotatedFrames

    frame = np.arange(12, dtype=np.uint8).reshape(3, 4)
    turned = RotatedFrames(ImageSource([frame]), degrees)
    out = turned.read()
    assert np.array_equal(out, np.rot90(frame, k=-degrees // 90))  # clockwise
    assert turned.read() is None and turned.exhausted
    turned.close()


def test_open_frame_source_turns_the_camera_as_configured(monkeypatch):
    from edge.config import CameraConfig
    from edge.sources import camera

    monkeypatch.setattr(camera, "OpenCVCaptureSource", lambda *a, **kw: ImageSource([]))
    opened = camera.open_frame_source(CameraConfig(source="opencv", rotate=180))
    assert isinstance(opened, camera.RotatedFrames) and opened.degrees == 180
    plain = camera.open_frame_source(CameraConfig(source="opencv"))
    assert not isinstance(plain, camera.RotatedFrames)
