from faster_whisper.tokenizer import _LANGUAGE_CODES

from serve_app.languages import LANGUAGES


def test_the_languages_are_faster_whispers() -> None:
    assert frozenset(_LANGUAGE_CODES) == LANGUAGES
