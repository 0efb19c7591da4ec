"""Interior design styles and the prompts that ask Stable Diffusion for them.

Each style's positive prompt describes materials, furniture and finishes; the negative
prompt pushes away from what breaks a *redesign* of an existing photo: changed walls,
windows or perspective, people, text, distortion. The geometry itself is held by the
depth + canny ControlNets; the prompts only say what the room should look like.

CLIP reads at most 77 tokens, so `build_prompt` puts what is specific to the request
first ("a {style} {room_type}", then the user's free text) and the style's detailed
description after it: when something must be truncated it is the generic detail, never
the user's own words.
"""
from __future__ import annotations

from dataclasses import dataclass

# Generic room words for when the classifier has no useful answer.
_NO_ROOM_TYPES = {"", "not a room", "unknown", "none"}

_COMMON_NEGATIVE = (
    "changed room layout, moved walls, moved windows, different perspective, different camera angle, "
    "distorted architecture, warped lines, floating furniture, people, person, text, watermark, logo, "
    "blurry, lowres, low quality, jpeg artifacts, oversaturated, cartoon, sketch, deformed"
)


@dataclass(frozen=True)
class Style:
    name: str
    description: str  # one line, for menus and --help
    positive: str
    negative: str


def _style(name: str, description: str, positive: str, avoid: str) -> Style:
    return Style(name, description, positive, f"{avoid}, {_COMMON_NEGATIVE}")


STYLES: dict[str, Style] = {s.name: s for s in [
    _style("modern", "Clean lines, neutral palette with bold accents, sleek contemporary furniture.",
           "modern interior design, clean lines, sleek low-profile furniture, neutral palette with bold "
           "accents, polished concrete or wide oak floor, glass and chrome details, recessed lighting, "
           "large abstract art, uncluttered surfaces, natural daylight, professional interior photography, "
           "photorealistic, 8k",
           "ornate, antique, cluttered, rustic, vintage, heavy drapes"),
    _style("scandinavian", "Light woods, white walls, cosy textiles and functional simplicity.",
           "scandinavian interior design, light oak and birch wood, white and soft grey tones, cosy wool "
           "and linen textiles, sheepskin throw, simple functional furniture with tapered legs, green "
           "houseplants, pendant lamp, bright airy natural light, hygge, professional interior "
           "photography, photorealistic",
           "dark, heavy furniture, ornate, gaudy colours, cluttered, baroque"),
    _style("boho", "Layered patterns, rattan and macrame, warm earthy colours and many plants.",
           "bohemian boho interior design, layered patterned rugs, rattan and wicker furniture, macrame "
           "wall hangings, floor cushions and poufs, abundant green plants, warm terracotta and mustard "
           "earth tones, woven baskets, eclectic global textiles, warm ambient light, professional "
           "interior photography, photorealistic",
           "sterile, cold, clinical, chrome, minimal, monochrome"),
    _style("industrial", "Exposed brick and metal, raw wood, Edison bulbs, loft character.",
           "industrial loft interior design, exposed brick accent, black metal and steel frames, "
           "reclaimed raw wood, leather sofa, Edison bulb pendant lights, concrete floor, open shelving "
           "with pipes, muted charcoal and rust palette, moody natural light, professional interior "
           "photography, photorealistic",
           "pastel colours, floral patterns, frilly, cute, glossy plastic, ornate"),
    _style("minimalist", "Few pieces, empty surfaces, monochrome calm and hidden storage.",
           "minimalist interior design, very few essential furniture pieces, empty clean surfaces, "
           "monochrome white and beige palette, hidden storage, simple geometric forms, matte finishes, "
           "soft diffused daylight, calm serene atmosphere, professional interior photography, "
           "photorealistic",
           "clutter, many objects, busy patterns, ornaments, colourful, maximalist, decorations"),
    _style("mid-century-modern", "1950s-60s: walnut, tapered legs, organic curves, retro accent colours.",
           "mid-century modern interior design, walnut wood furniture with tapered legs, Eames style "
           "lounge chair, organic curved shapes, teak sideboard, mustard, teal and burnt orange accents, "
           "sputnik or arc floor lamp, geometric patterns, warm daylight, professional interior "
           "photography, photorealistic",
           "futuristic, ultra-modern, chrome-heavy, baroque, rustic farmhouse"),
    _style("japandi", "Japanese calm meets Scandinavian warmth: low furniture, natural materials.",
           "japandi interior design, low wooden furniture, natural light oak and dark walnut, paper "
           "lantern lighting, linen and cotton textiles, muted earthy neutrals, wabi-sabi ceramics, "
           "bonsai or single branch in vase, clean uncluttered space, soft natural light, professional "
           "interior photography, photorealistic",
           "bright saturated colours, clutter, glossy plastic, ornate, heavy patterns"),
    _style("coastal", "Breezy whites and sea blues, natural fibres, light beach-house feel.",
           "coastal beach house interior design, crisp white and sea blue palette, light washed wood, "
           "natural jute and sisal rug, linen slipcovered sofa, rattan accents, striped cushions, "
           "driftwood decor, sheer curtains, bright sunny airy light, professional interior "
           "photography, photorealistic",
           "dark, moody, heavy, industrial, gothic, cluttered"),
    _style("farmhouse", "Rustic warmth: shiplap, distressed wood, vintage finds, cosy neutrals.",
           "modern farmhouse interior design, white shiplap accent, distressed reclaimed wood, rustic "
           "beams, vintage furniture, linen and plaid textiles, galvanised metal and wrought iron "
           "accents, farmhouse table, warm neutral palette, cosy warm light, professional interior "
           "photography, photorealistic",
           "futuristic, glossy, chrome, neon, ultra-modern, sterile"),
    _style("art-deco", "Glamour of the 1920s: geometric patterns, brass, velvet and rich colours.",
           "art deco interior design, bold geometric patterns, brass and gold accents, emerald green and "
           "navy velvet upholstery, black lacquer, marble surfaces, fan and sunburst motifs, statement "
           "chandelier, mirrored details, luxurious glamorous atmosphere, professional interior "
           "photography, photorealistic",
           "rustic, shabby, plain, minimal, farmhouse, cheap materials"),
    _style("traditional", "Classic elegance: rich wood, symmetry, tufted upholstery and warm tones.",
           "traditional classic interior design, rich dark wood furniture, symmetrical arrangement, "
           "tufted upholstery, crown molding details, damask and floral fabrics, table lamps, persian "
           "rug, warm inviting tones, elegant atmosphere, professional interior photography, "
           "photorealistic",
           "industrial, raw concrete, neon, futuristic, stark minimal"),
]}

# Each style's colours as swatches for pickers (the studio's style cards): read off the
# descriptions above, darkest structural colour first, accents last.
PALETTES: dict[str, tuple[str, ...]] = {
    "modern": ("#2b2b2b", "#d9d6d0", "#f4f3ef", "#c8553d"),
    "scandinavian": ("#e9e4da", "#ffffff", "#c9a27e", "#8a9a8b"),
    "boho": ("#8c4a2f", "#d08c60", "#e8c39e", "#5b7f4a"),
    "industrial": ("#3a3a3a", "#8b4a3a", "#7a6a58", "#b87333"),
    "minimalist": ("#ffffff", "#ece8e1", "#cfc8bd", "#1f1f1f"),
    "mid-century-modern": ("#6b3e26", "#e0a526", "#2f6f6a", "#d35f2b"),
    "japandi": ("#efe9df", "#c2b29a", "#6e5b47", "#3c3a36"),
    "coastal": ("#ffffff", "#a8c8dc", "#2f6690", "#e5d8bd"),
    "farmhouse": ("#f3efe6", "#b9a58c", "#6f5a45", "#3e4a3d"),
    "art-deco": ("#101820", "#b08d57", "#1f5f5b", "#7b1e3a"),
    "traditional": ("#4a2c1d", "#8c1c13", "#d8c3a5", "#c9a227"),
}


def normalize_style(name: str) -> str:
    """'Mid Century Modern', 'mid_century_modern' -> 'mid-century-modern'."""
    return "-".join(str(name).strip().lower().replace("_", " ").replace("-", " ").split())


def get_style(name: str) -> Style:
    key = normalize_style(name)
    try:
        return STYLES[key]
    except KeyError:
        raise ValueError(f"unknown style '{name}'; choose one of: {', '.join(STYLES)}") from None


def display_name(name: str) -> str:
    """'mid-century-modern' -> 'Mid Century Modern' (for progress messages)."""
    return name.replace("_", " ").replace("-", " ").title()


def build_prompt(style: str, room_type: str | None = None, extra: str | None = None) -> tuple[str, str]:
    """(positive, negative) prompts for a style, a room type and the user's free text.

    The positive prompt starts with "a {style} {room_type}" ("an" before a vowel) (room_type "room" when unknown),
    then the free text (its length is bounded by restyle.contract, checked at the request's edge),
    then the style's detailed description.
    """
    s = get_style(style)
    room = " ".join(str(room_type or "").strip().lower().split())
    if room in _NO_ROOM_TYPES:
        room = "room"
    words = s.name.replace("-", " ")
    article = "an" if words[0] in "aeiou" else "a"
    parts = [f"{article} {words} {room}"]
    if extra is not None:
        text = " ".join(str(extra).split())
        if text:
            parts.append(text)
    parts.append(s.positive)
    return ", ".join(parts), s.negative
