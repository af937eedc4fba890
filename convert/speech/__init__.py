"""Speech emotion training: corpora -> device features -> speaker-independent evaluation -> int8.

Laid out as the pipeline reads: ``corpora`` (indexing, the label rule), ``recipe`` (what defines
a model), ``features`` (the device's own MFCC over every clip and its augmented copies), ``model``,
``train``, ``evaluate`` (the protocol, with ``channels``: an unseen corpus heard through a
telephone), ``pipeline`` (the command's steps) and ``cli``.
"""
