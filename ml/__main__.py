"""``python -m ml``: the same commands as ``nerloop``."""

from ml.cli import main

main()
