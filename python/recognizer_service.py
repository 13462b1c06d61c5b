"""WSGI entry point `recognizer_service:app` (with python/ on sys.path).

Creating the app opens nothing: Gunicorn loads the model and the pool in each worker after fork
(gunicorn.conf.py), Waitress and the development server call warm_up() before serving.

Run directly (`python python/recognizer_service.py`, as the older documentation says), it starts
Flask's development server, like `python/start_production.py --dev`: one process, not for production.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

if __name__ == "__main__":
    # The same checks and the same development server as the start script, with a warning.
    import start_production

    start_production.main(["--dev", *sys.argv[1:]])
else:
    from recognition_service import create_app

    app = create_app()
