"""Writing a predict run's results to a folder without losing any: one drawn image and one JSON per image, one
drawn video and one JSON-lines file per video or stream, names never reused within the run."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from rtdetr.engine.results import Results

__all__ = ["ResultSaver", "save_results", "source_fps"]

#: frames per second written for a camera or stream (their rate is not known ahead)
STREAM_FPS = 30.0


def source_fps(path: str | None, video_stride: int = 1) -> float:
    """Frames per second of the frames a source gives with ``video_stride``: a video file's own rate, else
    :data:`STREAM_FPS` (a camera, a stream or a file whose rate OpenCV cannot read), divided by the stride."""
    fps = 0.0
    if path is not None and Path(path).is_file():
        import cv2

        cap = cv2.VideoCapture(path)
        try:
            fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        finally:
            cap.release()
    rate = fps if np.isfinite(fps) and fps > 0 else STREAM_FPS
    return rate / max(1, video_stride)


class _VideoOut:
    """The drawn video (``.mp4``, else Motion-JPEG ``.avi`` where OpenCV lacks an mp4 encoder) and the
    ``.jsonl`` (one line per frame) of one video source."""

    def __init__(self, stem: Path, fps: float, size: tuple[int, int]) -> None:
        import cv2

        self.size = size
        self.writer: Any = None
        for suffix, codec in ((".mp4", "mp4v"), (".avi", "MJPG")):
            fourcc = cv2.VideoWriter.fourcc(*codec)
            writer = cv2.VideoWriter(str(stem) + suffix, fourcc, fps, size)
            if writer.isOpened():
                self.writer, self.video = writer, Path(str(stem) + suffix)
                break
            writer.release()
            Path(str(stem) + suffix).unlink(missing_ok=True)
        if self.writer is None:
            raise OSError(f"{stem}: OpenCV cannot write a video here (neither mp4v nor MJPG)")
        self.jsonl = Path(str(stem) + ".jsonl")
        self.lines = self.jsonl.open("w")

    def write(self, r: Results) -> None:
        import cv2

        drawn = np.asarray(r.plot().convert("RGB"))
        if drawn.shape[1::-1] != self.size:  # a stream that changed resolution: keep the video's size
            drawn = cv2.resize(drawn, self.size)
        self.writer.write(cv2.cvtColor(drawn, cv2.COLOR_RGB2BGR))
        self.lines.write(r.to_json() + "\n")

    def close(self) -> None:
        self.writer.release()
        self.lines.close()


class ResultSaver:
    """Writes results into ``folder``: an image's as ``<stem>.jpg`` + ``<stem>.json``; a video's or stream's
    frames into one ``<stem>.mp4`` (at the source's frame rate divided by ``video_stride``) + ``<stem>.jsonl``.
    Two sources with the same stem (``a/x.jpg`` and ``b/x.jpg``, ``x.jpg`` and ``x.png``) get ``x`` and ``x_2``:
    nothing written in this run is overwritten. In-memory images are ``image_00000``...; a camera is ``camera``,
    a stream URL ``stream``. With ``save_txt`` YOLO label files go to ``labels/<stem>.txt`` (a video's frames:
    ``labels/<stem>_<frame>.txt``, never the name of an image's in this run; an image without detections: an
    empty file) and the class names to
    ``labels/classes.txt``, with ``save_conf`` a sixth column, the score. With ``save_crop`` each detection's
    region of the original image goes to ``crops/<class name>/<stem>_<k>.jpg`` (k = 1, 2... in score order; a
    video's frames: ``<stem>_<frame>_<k>.jpg``). Use as a context manager (closes the videos)."""

    def __init__(
        self,
        folder: str | Path,
        video_stride: int = 1,
        save_txt: bool = False,
        save_conf: bool = False,
        save_crop: bool = False,
    ) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.video_stride = video_stride
        self.labels = self.folder / "labels" if save_txt else None
        self.save_conf, self.names_written = save_conf, False
        self.crops = self.folder / "crops" if save_crop else None
        self.used: set[str] = {"classes"} if save_txt else set()  # labels/classes.txt holds the class names
        #: the video being written and its source (sources run one after another: one is open at a time)
        self.video: tuple[str | None, _VideoOut] | None = None
        self.n_in_memory = 0
        #: every file written, in order
        self.written: list[Path] = []

    def _stem(self, base: str) -> Path:
        stem, i = base, 1
        while stem.lower() in self.used:
            i += 1
            stem = f"{base}_{i}"
        self.used.add(stem.lower())
        return self.folder / stem

    def add(self, r: Results) -> None:
        """Write one result (a video's frames go to its open video)."""
        if r.frame is None:
            if r.path:
                stem = self._stem(Path(r.path).stem)
            else:
                stem = self._stem(f"image_{self.n_in_memory:05d}")
                self.n_in_memory += 1
            for suffix in (".jpg", ".json"):
                self.written.append(r.save(stem.with_name(stem.name + suffix)))
            self._txt(r, stem.name)
            self._crops(r, stem.name)
            return
        if self.video is None or self.video[0] != r.path:  # a new source: the previous one has ended
            self.close()
            if r.path is not None and Path(r.path).is_file():
                base = Path(r.path).stem
            else:
                base = "camera" if r.path is None else "stream"
            out = _VideoOut(self._stem(base), source_fps(r.path, self.video_stride), r.orig_size)
            self.video = (r.path, out)
            self.written += [out.video, out.jsonl]
        self.video[1].write(r)
        if self.labels is not None or self.crops is not None:  # the frame's name, apart from every image's (_2...)
            name = self._stem(f"{self.video[1].video.stem}_{r.frame}").name
            self._txt(r, name)
            self._crops(r, name)

    def _crops(self, r: Results, name: str) -> None:
        if self.crops is None:
            return
        for k, (crop, cls) in enumerate(zip(r.crops(), r.class_names), 1):
            path = self.crops / _folder_name(cls) / f"{name}_{k}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            crop.save(path, quality=95)
            self.written.append(path)

    def _txt(self, r: Results, name: str) -> None:
        if self.labels is not None:
            if not self.names_written:  # the names too, where the YOLO reader looks for them
                self.labels.mkdir(exist_ok=True)
                self.names_written = True
                (self.labels / "classes.txt").write_text("".join(f"{n}\n" for n in r.names))
                self.written.append(self.labels / "classes.txt")
            path = self.labels / f"{name}.txt"
            path.write_text(r.to_yolo(conf=self.save_conf))
            self.written.append(path)

    def close(self) -> None:
        if self.video is not None:
            self.video[1].close()
            self.video = None

    def __enter__(self) -> ResultSaver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _folder_name(name: str) -> str:
    """A class name as a folder name: path separators and characters file systems refuse become ``_``."""
    safe = re.sub(r'[\\/:*?"<>|\x00-\x1f]+', "_", name).strip(" .")
    return safe or "_"


def save_results(
    results: Iterator[Results], folder: str | Path, video_stride: int = 1, save_txt: bool = False,
    save_conf: bool = False, save_crop: bool = False,
) -> Iterator[Results]:  # fmt: skip
    """Pass ``results`` through, writing each into ``folder`` (:class:`ResultSaver`) before yielding it."""
    with ResultSaver(folder, video_stride, save_txt, save_conf, save_crop) as saver:
        for r in results:
            saver.add(r)
            yield r
