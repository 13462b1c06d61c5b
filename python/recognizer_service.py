"""WSGI entry point `recognizer_service:app` (with python/ on sys.path).

Creating the app opens nothing: Gunicorn loads the model and the pool in each worker after fork
(gunicorn.conf.py), Waitress and the development server call warm_up() before serving.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from recognition_service import create_app  # noqa: E402

app = create_app()
