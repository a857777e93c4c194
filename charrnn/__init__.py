"""charrnn: character-level recurrent networks trained from the command line."""

__version__ = "0.1.0"
