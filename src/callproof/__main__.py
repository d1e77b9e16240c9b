"""``python -m callproof``."""

from callproof.cli import main

raise SystemExit(main())
