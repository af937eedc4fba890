"""emotion-convert: desktop training and int8 conversion for emotion-edge models.

Imports TensorFlow lazily (inside the functions that train or convert) so indexing and metrics
work without it; the device package ``edge`` never imports this one.
"""

from __future__ import annotations

__all__: list[str] = []
