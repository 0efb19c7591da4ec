import pytest

from restyle.contract import MAX_PROMPT_CHARS, InvalidRequest, parse_request
from restyle.styles import STYLES, build_prompt, get_style

REQUIRED = ["modern", "scandinavian", "boho", "industrial", "minimalist"]


def test_required_and_extra_styles_present():
    assert set(REQUIRED) <= set(STYLES)
    assert {"mid-century-modern", "japandi", "coastal", "farmhouse", "art-deco"} <= set(STYLES)


@pytest.mark.parametrize("name", list(STYLES))
def test_every_style_is_complete(name):
    s = STYLES[name]
    assert s.name == name
    assert s.description and "\n" not in s.description and len(s.description) < 120
    assert "interior" in s.positive and len(s.positive) > 80
    # the negative prompt protects the room's structure in every style
    for word in ("moved walls", "moved windows", "different perspective"):
        assert word in s.negative
    assert len(set(s.positive.split(", ")) & set(s.negative.split(", "))) == 0


def test_prompt_contains_style_room_type_and_free_text():
    positive, negative = build_prompt("scandinavian", "bedroom", "  with a green   velvet armchair ")
    assert positive.startswith("a scandinavian bedroom, with a green velvet armchair, ")
    assert STYLES["scandinavian"].positive in positive
    assert negative == STYLES["scandinavian"].negative


def test_prompt_without_room_type_or_text():
    positive, _ = build_prompt("industrial", None, None)
    assert positive == f"an industrial room, {STYLES['industrial'].positive}"
    assert build_prompt("boho", "not a room", "   ")[0].startswith("a boho room, bohemian")


def test_style_names_are_normalised():
    assert get_style("Mid Century Modern").name == "mid-century-modern"
    assert get_style(" ART_DECO ").name == "art-deco"
    assert build_prompt("Japandi", "Living Room", None)[0].startswith("a japandi living room, ")


def test_unknown_style_names_the_choices():
    with pytest.raises(ValueError, match=r"unknown style 'gothic'; choose one of: modern, scandinavian, boho"):
        build_prompt("gothic", "kitchen", None)


def test_free_text_length_is_capped_by_the_contract():
    assert parse_request(style="modern", prompt="x" * MAX_PROMPT_CHARS).prompt == "x" * MAX_PROMPT_CHARS
    with pytest.raises(InvalidRequest, match=rf"prompt is too long: {MAX_PROMPT_CHARS + 1} characters, at most {MAX_PROMPT_CHARS}"):
        parse_request(style="modern", prompt="x" * (MAX_PROMPT_CHARS + 1))
