import pytest
from faster_whisper.tokenizer import _LANGUAGE_CODES

from serve_app.languages import LANGUAGES, UnknownLanguage, normalise_language


def test_the_languages_are_faster_whispers() -> None:
    assert frozenset(_LANGUAGE_CODES) == LANGUAGES


@pytest.mark.parametrize("raw", [None, "", "  ", "auto", "AUTO", " Auto "])
def test_none_empty_and_auto_mean_detect(raw: str | None) -> None:
    assert normalise_language(raw) is None


@pytest.mark.parametrize(("raw", "code"), [("de", "de"), (" DE ", "de"), ("haw", "haw"), ("Yue", "yue")])
def test_a_code_is_stripped_and_lower_cased(raw: str, code: str) -> None:
    assert normalise_language(raw) == code


@pytest.mark.parametrize("raw", ["xx", "english", "de-DE", "klingon"])
def test_an_unknown_code_is_refused_with_what_to_send(raw: str) -> None:
    with pytest.raises(UnknownLanguage) as refused:
        normalise_language(raw)
    assert isinstance(refused.value, ValueError)
    assert str(refused.value).startswith(f"language {raw.lower()!r} is not a code Whisper knows")
    assert "auto to detect it" in str(refused.value)
