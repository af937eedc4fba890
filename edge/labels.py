"""The common label set every modality is fused over, and the default map onto it.

Trainers write :func:`fusion_map_for` into each manifest; the LEDs colour these labels; fusion
combines over them.  Kept at the root because all three depend on it and on nothing else.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["COMMON_LABELS", "fusion_map_for"]

#: Preferred order of the common label set; labels outside it follow alphabetically.
COMMON_LABELS: tuple[str, ...] = (
    "neutral", "happy", "sad", "angry", "fearful", "disgust", "surprised",
)
#: Model labels whose common label has another name (speech "calm", FER "fear"/"surprise"), and
#: the nouns and synonyms a corpus of one's own is labelled with ("anger", "joy").
_TO_COMMON = {"calm": "neutral", "fear": "fearful", "surprise": "surprised", "anger": "angry",
              "happiness": "happy", "joy": "happy", "sadness": "sad", "afraid": "fearful",
              "scared": "fearful", "disgusted": "disgust"}


def fusion_map_for(labels: Sequence[str]) -> dict[str, str | None]:
    """The default ``fusion_map`` a trainer writes into a manifest: each model label -> its
    common label, or ``None`` when it has none (e.g. EmoDB "boredom")."""
    out: dict[str, str | None] = {}
    for label in labels:
        name = label.strip().lower()  # "Angry" in a spreadsheet's CSV
        common = _TO_COMMON.get(name, name)
        out[label] = common if common in COMMON_LABELS else None
    return out
