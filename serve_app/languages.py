"""The languages Whisper knows, by ISO-639-1 code (as the job API spec lists them, plus `yue`),
and the one reading of a language a user gives: the /v1 forms, the job API and the batch CLI
all go through normalise_language.

tests/test_languages.py keeps LANGUAGES equal to faster-whisper's own list, which the Ingress
cannot import without loading the engine.
"""

from __future__ import annotations

__all__ = ["AUTO", "LANGUAGES", "UnknownLanguage", "normalise_language"]

LANGUAGES: frozenset[str] = frozenset(
    [
        "af",
        "am",
        "ar",
        "as",
        "az",
        "ba",
        "be",
        "bg",
        "bn",
        "bo",
        "br",
        "bs",
        "ca",
        "cs",
        "cy",
        "da",
        "de",
        "el",
        "en",
        "es",
        "et",
        "eu",
        "fa",
        "fi",
        "fo",
        "fr",
        "gl",
        "gu",
        "ha",
        "haw",
        "he",
        "hi",
        "hr",
        "ht",
        "hu",
        "hy",
        "id",
        "is",
        "it",
        "ja",
        "jw",
        "ka",
        "kk",
        "km",
        "kn",
        "ko",
        "la",
        "lb",
        "ln",
        "lo",
        "lt",
        "lv",
        "mg",
        "mi",
        "mk",
        "ml",
        "mn",
        "mr",
        "ms",
        "mt",
        "my",
        "ne",
        "nl",
        "nn",
        "no",
        "oc",
        "pa",
        "pl",
        "ps",
        "pt",
        "ro",
        "ru",
        "sa",
        "sd",
        "si",
        "sk",
        "sl",
        "sn",
        "so",
        "sq",
        "sr",
        "su",
        "sv",
        "sw",
        "ta",
        "te",
        "tg",
        "th",
        "tk",
        "tl",
        "tr",
        "tt",
        "uk",
        "ur",
        "uz",
        "vi",
        "yi",
        "yo",
        "yue",
        "zh",
    ]
)

AUTO = ("", "auto")
"""What asks for the language to be detected, beside no language at all."""


class UnknownLanguage(ValueError):
    """A language Whisper does not know; the message says what to give instead."""


def normalise_language(raw: str | None) -> str | None:
    """The code of a language as the engine takes it: stripped and lower-cased; None, meaning
    detect it, for none, an empty one or `auto`. UnknownLanguage for a code not in LANGUAGES."""
    code = (raw or "").strip().lower()
    if code in AUTO:
        return None
    if code not in LANGUAGES:
        raise UnknownLanguage(
            f"language {code!r} is not a code Whisper knows: use one such as en, de or fr, or auto to detect it"
        )
    return code
