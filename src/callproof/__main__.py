"""``python -m callproof``."""

from callproof.cli import main

main()
