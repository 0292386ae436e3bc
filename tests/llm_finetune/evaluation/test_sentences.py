from llm_finetune.evaluation.sentences import sentences


def test_abbreviations_do_not_end_a_sentence():
    assert sentences("Dr. Smith went to the U.S. yesterday. He liked it.") == [
        "Dr. Smith went to the U.S. yesterday.", "He liked it."]
    assert sentences("Mr. Jones paid $3.50 at 5 p.m. today. Then he left!") == [
        "Mr. Jones paid $3.50 at 5 p.m. today.", "Then he left!"]


def test_line_breaks_end_a_sentence_and_blank_text_has_none():
    assert sentences("first line\nsecond line. third") == ["first line", "second line.", "third"]
    assert sentences("  \n ") == []
