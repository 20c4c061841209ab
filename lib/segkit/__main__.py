"""python -m segkit COMMAND ... (the same as the installed `segkit` command)."""
import sys

from segkit.commands import main

sys.exit(main())
