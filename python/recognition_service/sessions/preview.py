"""A camera's view for the installer: the newest frame with the faces found, each labelled with its size.

Green: big enough to be named from one frame; amber: named only after several frames (SMALL_FACE_PX);
the region of interest, when set, is outlined. An IT person aims and focuses a camera with it and sees
which seats are too far for the lens.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

MAX_SIDE = 1280  # the preview's longer side: enough to read a face's size label, small enough to keep in SQL
GREEN, AMBER, BLUE = (60, 200, 60), (0, 170, 255), (255, 160, 0)


@dataclass
class Preview:
    jpeg: bytes
    width: int   # of the camera's frame
    height: int
    faces: list[dict]  # bbox in the frame's pixels, size_px (shorter side), det_score


def render(frame: np.ndarray, boxes: np.ndarray, *, roi=None, small_px: int = 32, quality: int = 80) -> Preview:
    height, width = frame.shape[:2]
    scale = min(1.0, MAX_SIDE / max(width, height))
    view = cv2.resize(frame, (round(width * scale), round(height * scale)), interpolation=cv2.INTER_AREA) \
        if scale < 1 else frame.copy()
    if roi:
        points = np.array([[x * width * scale, y * height * scale] for x, y in roi], np.int32)
        cv2.polylines(view, [points.reshape(-1, 1, 2)], True, BLUE, 2)
    faces = []
    for box in boxes:
        x1, y1, x2, y2, score = (float(v) for v in box[:5])
        size = int(round(min(x2 - x1, y2 - y1)))
        faces.append({"bbox": [round(x1, 1), round(y1, 1), round(x2, 1), round(y2, 1)], "size_px": size,
                      "det_score": round(score, 3)})
        colour = GREEN if size >= small_px else AMBER
        p1, p2 = (round(x1 * scale), round(y1 * scale)), (round(x2 * scale), round(y2 * scale))
        cv2.rectangle(view, p1, p2, colour, 2)
        cv2.putText(view, f"{size}px", (p1[0], max(12, p1[1] - 4)), cv2.FONT_HERSHEY_SIMPLEX, 0.45, colour, 1,
                    cv2.LINE_AA)
    ok, jpeg = cv2.imencode(".jpg", view, [cv2.IMWRITE_JPEG_QUALITY, quality])
    return Preview(jpeg.tobytes() if ok else b"", width, height, faces)
