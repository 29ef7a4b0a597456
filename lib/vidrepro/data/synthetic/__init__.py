"""A seeded world of coloured shapes doing things, written in the real datasets' formats.

``world`` (scripts) -> ``render`` (frames), ``audio`` (sound), ``language`` (captions),
``features`` (BMT-style features); ``scenes`` and ``states`` draw random scripts;
``datasets`` writes each kind of data to disk.
"""
