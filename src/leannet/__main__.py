"""`python -m leannet` runs the command line, like the `leannet` script."""
from leannet.cli import main

main()
