"""`python -m charrnn` runs the command-line tool."""
from charrnn.cli import cli

cli(prog_name="charrnn")
