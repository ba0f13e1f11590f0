"""`python -m serve_app.batch MEDIA OUTPUT [options]`: see serve_app/batch/__init__.py."""

import sys

from serve_app.batch.cli import main

if __name__ == "__main__":
    sys.exit(main())
