"""WSGI entry point: `recognizer_service:app` (python/ on the path)."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from recognition_service import create_app  # noqa: E402

app = create_app(warm_up=True)

if __name__ == "__main__":
    print("Flask development server: for trying things out only; use python/start_production.py in production",
          file=sys.stderr)
    app.run(host=os.environ.get("HOST", "127.0.0.1"), port=int(os.environ.get("PORT", "8000")), threaded=True)
