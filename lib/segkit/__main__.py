"""python -m segkit COMMAND ... (the same as the installed `segkit` command)."""
from segkit.commands import console

console()
