"""Speakers of transcript segments and words, from hand-made speaker turns."""

from __future__ import annotations

import random

from serve_app.diarization.speakers import SpeakerLabeller, SpeakerTurn, assign_speakers
from serve_app.transcript import Segment, Word

A, B, C = "SPEAKER_00", "SPEAKER_01", "SPEAKER_02"


def turns(*spans: tuple[float, float, str]) -> list[SpeakerTurn]:
    return [SpeakerTurn(start, end, speaker) for start, end, speaker in spans]


def segments(*spans: tuple[float, float]) -> list[Segment]:
    return [Segment(id=index, start=start, end=end, text=f" segment {index}") for index, (start, end) in enumerate(spans)]


def speakers_of(labelled: list[Segment]) -> list[str | None]:
    return [segment.speaker for segment in labelled]


def test_each_segment_gets_the_speaker_of_the_turn_it_falls_in() -> None:
    dialogue = turns((0.0, 4.0, A), (4.5, 9.0, B), (9.2, 12.0, A))
    labelled = assign_speakers(segments((0.2, 2.0), (2.0, 3.9), (4.6, 8.8), (9.5, 11.0)), dialogue)
    assert speakers_of(labelled) == [A, A, B, A]


def test_speaker_turn_marks_the_first_segment_of_each_new_speaker() -> None:
    dialogue = turns((0.0, 4.0, A), (4.0, 8.0, B), (8.0, 12.0, A))
    labelled = assign_speakers(segments((0, 2), (2, 4), (4, 6), (6, 8), (8, 10), (10, 12)), dialogue)
    assert speakers_of(labelled) == [A, A, B, B, A, A]
    assert [segment.speaker_turn for segment in labelled] == [True, False, True, False, True, False]


def test_a_segment_across_two_turns_goes_to_the_longer_overlap() -> None:
    dialogue = turns((0.0, 3.0, A), (3.0, 6.0, B))
    assert speakers_of(assign_speakers(segments((2.5, 4.0), (1.0, 3.4)), dialogue)) == [B, A]


def test_overlap_is_summed_over_all_of_a_speakers_turns() -> None:
    # B has the longest single turn inside the segment (1.2 s), A the most time in all (1.4 s).
    dialogue = turns((0.0, 1.0, A), (1.0, 2.2, B), (2.2, 3.4, A))
    assert speakers_of(assign_speakers(segments((0.4, 3.0)), dialogue)) == [A]


def test_equal_overlaps_go_to_the_turn_that_starts_first() -> None:
    dialogue = turns((1.0, 2.0, B), (0.0, 1.0, A))  # not in time order: the labeller sorts them
    assert speakers_of(assign_speakers(segments((0.5, 1.5)), dialogue)) == [A]


def test_overlapping_turns_of_two_speakers() -> None:
    dialogue = turns((0.0, 10.0, A), (4.0, 6.0, B))
    assert speakers_of(assign_speakers(segments((3.0, 7.0), (4.5, 5.5), (5.0, 5.5)), dialogue)) == [A, A, A]
    assert speakers_of(assign_speakers(segments((4.0, 6.0)), turns((0.0, 4.5, A), (4.0, 6.0, B)))) == [B]


def test_a_segment_in_a_pause_goes_to_the_nearest_turn() -> None:
    dialogue = turns((0.0, 2.0, A), (3.0, 5.0, B))
    labelled = assign_speakers(segments((2.1, 2.3), (2.7, 2.9), (2.25, 2.75)), dialogue)
    assert speakers_of(labelled) == [A, B, A]  # the last one is halfway: the turn before wins


def test_segments_before_the_first_turn_and_after_the_last() -> None:
    dialogue = turns((1.0, 2.0, B), (2.5, 4.0, A))
    assert speakers_of(assign_speakers(segments((0.0, 0.5), (5.0, 6.0)), dialogue)) == [B, A]


def test_zero_length_segments() -> None:
    dialogue = turns((0.0, 2.0, A), (2.0, 4.0, B), (5.0, 6.0, C))
    labelled = assign_speakers(segments((1.0, 1.0), (3.0, 3.0), (2.0, 2.0), (4.9, 4.9), (7.0, 7.0)), dialogue)
    # inside a turn; inside a turn; on the boundary (the earlier turn); in a pause; after the end
    assert speakers_of(labelled) == [A, B, A, C, C]


def test_words_get_their_own_speakers() -> None:
    dialogue = turns((0.0, 2.0, A), (2.0, 4.0, B))
    segment = Segment(
        id=0,
        start=0.0,
        end=2.6,
        text=" yes. and you?",
        words=[Word(0.0, 1.0, " yes."), Word(1.9, 2.3, " and"), Word(2.3, 2.6, " you?"), Word(2.6, 2.6, "")],
    )
    first, second = assign_speakers([segment], dialogue)
    assert [word.speaker for word in first.words + second.words] == [A, B, B, B]
    # split where the speaker changes: each piece its words, their text and times
    assert (first.id, first.start, first.end, first.text, first.speaker, first.speaker_turn) == (0, 0.0, 1.0, " yes.", A, True)
    assert (second.id, second.start, second.end, second.text, second.speaker, second.speaker_turn) == (
        1,
        1.9,
        2.6,
        " and you?",
        B,
        True,
    )


def test_a_segment_whose_words_do_not_spell_its_text_stays_whole() -> None:
    dialogue = turns((0.0, 2.0, A), (2.0, 4.0, B))
    segment = Segment(id=0, start=0.0, end=3.0, text=" yes and you", words=[Word(0.0, 0.5, " yes"), Word(2.0, 3.0, " and you?")])
    [labelled] = assign_speakers([segment], dialogue)
    assert labelled.speaker == B  # most of the words' time
    assert [word.speaker for word in labelled.words] == [A, B]


def test_a_word_nobody_was_heard_saying_goes_to_the_nearest_speaker() -> None:
    dialogue = turns((0.0, 1.0, A), (5.0, 6.0, B))
    segment = Segment(id=0, start=1.5, end=4.8, text=" um hm", words=[Word(1.5, 1.8, " um"), Word(4.5, 4.8, " hm")])
    first, second = assign_speakers([segment], dialogue)
    assert (first.text, first.speaker, second.text, second.speaker) == (" um", A, " hm", B)


def test_pieces_are_numbered_on_from_the_segments_before() -> None:
    dialogue = turns((0.0, 1.0, A), (1.0, 2.0, B), (2.0, 3.0, A))
    two_speakers = Segment(id=0, start=0.0, end=2.0, text=" a b", words=[Word(0.0, 0.9, " a"), Word(1.1, 1.9, " b")])
    one = Segment(id=1, start=2.1, end=2.9, text=" c", words=[Word(2.1, 2.9, " c")])
    labelled = assign_speakers([two_speakers, one], dialogue)
    assert [(s.id, s.text, s.speaker, s.speaker_turn) for s in labelled] == [
        (0, " a", A, True),
        (1, " b", B, True),
        (2, " c", A, True),
    ]


def test_no_turns_leave_every_segment_without_a_speaker() -> None:
    segment = Segment(id=0, start=0.0, end=1.0, text=" hum", words=[Word(0.0, 1.0, " hum")])
    [labelled] = assign_speakers([segment], [])
    assert labelled.speaker is None and labelled.speaker_turn is False
    assert labelled.words[0].speaker is None
    assert assign_speakers([], turns((0.0, 1.0, A))) == []


def test_the_labeller_labels_a_stream_as_segments_come() -> None:
    dialogue = turns((0.0, 4.0, A), (4.0, 8.0, B))
    labeller = SpeakerLabeller(dialogue)
    streamed = [piece for segment in segments((0, 2), (2, 4), (4, 6)) for piece in labeller.label(segment)]
    assert speakers_of(streamed) == [A, A, B]
    assert [segment.speaker_turn for segment in streamed] == [True, False, True]


def test_turns_added_piece_by_piece_label_as_all_of_them_at_once_and_keep_the_numbering() -> None:
    labeller = SpeakerLabeller(turns((0.0, 4.0, A)))
    first = [piece for segment in segments((0, 2), (2, 4)) for piece in labeller.label(segment)]
    labeller.add(turns((4.0, 8.0, B), (8.0, 9.0, A)))
    then = [piece for segment in segments((4, 6), (8, 9)) for piece in labeller.label(segment)]
    assert speakers_of(first + then) == [A, A, B, A]
    assert [segment.id for segment in first + then] == [0, 1, 2, 3]
    assert [segment.speaker_turn for segment in first + then] == [True, False, True, True]


def _brute_force(all_turns: list[SpeakerTurn], start: float, end: float) -> str | None:
    """The rule, the slow way: every turn looked at."""
    ordered = sorted(all_turns, key=lambda turn: (turn.start, turn.end))
    if not ordered:
        return None
    overlaps: dict[str, float] = {}
    for turn in ordered:
        overlap = min(turn.end, end) - max(turn.start, start)
        if overlap > 0:
            overlaps[turn.speaker] = overlaps.get(turn.speaker, 0.0) + overlap
    if overlaps:
        best = max(overlaps.values())
        return next(speaker for speaker, overlap in overlaps.items() if overlap == best)
    distances = [max(turn.start - end, start - turn.end, 0.0) for turn in ordered]
    return ordered[distances.index(min(distances))].speaker


def test_the_fast_look_up_agrees_with_looking_at_every_turn() -> None:
    generator = random.Random(7)
    for _ in range(300):
        some_turns = []
        for _ in range(generator.randint(0, 12)):
            start = generator.randint(0, 80) / 4  # quarter seconds: exact sums, real ties
            some_turns.append(SpeakerTurn(start, start + generator.randint(0, 16) / 4, generator.choice((A, B, C))))
        labeller = SpeakerLabeller(some_turns)
        for _ in range(20):
            start = generator.randint(0, 90) / 4
            end = start + generator.randint(0, 12) / 4
            assert labeller.speaker_of(start, end) == _brute_force(some_turns, start, end), (some_turns, start, end)
