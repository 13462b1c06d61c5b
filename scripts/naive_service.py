#!/usr/bin/env python3
"""The naive way, for scripts/benchmark.py's comparison (c) only: do not deploy.

Flask's development server, insightface's FaceAnalysis.get() (faces embedded one by one), one database
query per request for every embedding, and a Python loop over students for matching.
Usage: DATABASE_URL=... MODEL_DIR=... PORT=... python scripts/naive_service.py
"""

import os
import sys

if len(sys.argv) > 1:  # --help, or anything else: it takes no options
    print(__doc__)
    sys.exit(0 if sys.argv[1] in ("-h", "--help") else 2)
if missing := {"MODEL_DIR", "DATABASE_URL", "PORT"} - os.environ.keys():
    sys.exit(f"naive_service: set {', '.join(sorted(missing))} (see --help)")

import numpy as np  # noqa: E402
import psycopg2  # noqa: E402
from flask import Flask, jsonify, request  # noqa: E402
from insightface.app import FaceAnalysis  # noqa: E402

app = Flask(__name__)
analyser = FaceAnalysis(name=os.environ["MODEL_DIR"], allowed_modules=["detection", "recognition"])
analyser.prepare(ctx_id=-1, det_size=(640, 640))


@app.post("/api/v1/recognize")
def recognize():
    import cv2

    data = request.files["image"].read()
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    faces = analyser.get(img)
    with psycopg2.connect(os.environ["DATABASE_URL"]) as conn, conn.cursor() as cur:
        cur.execute("SELECT student_id, embedding FROM faces")
        rows = cur.fetchall()
    out = []
    for face in faces:
        emb = face.embedding / np.linalg.norm(face.embedding)
        best, best_sim = None, -1.0
        for student_id, blob in rows:
            sim = float(np.dot(emb, np.frombuffer(blob, np.float32)))
            if sim > best_sim:
                best, best_sim = student_id, sim
        out.append({"student_id": best if best_sim >= 0.35 else None, "similarity": best_sim})
    return jsonify({"faces": out})


@app.get("/health/ready")
def ready():
    return jsonify({"status": "ready"})


if __name__ == "__main__":
    app.run(host="127.0.0.1", port=int(os.environ["PORT"]), threaded=True)
