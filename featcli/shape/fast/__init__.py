"""The fast road of ``featcli shape -``: each distinct stage compiled once into a step that does the integer
arithmetic and writes the stage's JSON text, byte for byte what :mod:`featcli.shape.rules` and
:meth:`featcli.shape.report.ShapeReport.to_dict` say. A step hands any stage it would have to refuse or
explain back to its rule, so every message is the rules'. The speed idioms (kept texts, interned fractions,
bounded caches) live here and only here."""
