"""``python -m optimizer_operator`` runs the operator, like ``llm-optimizer operator``."""

import sys

from .cli.main import main

sys.exit(main(sys.argv[1:] or ["operator"]))
