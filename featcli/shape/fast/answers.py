"""JSON text of a shape query for the stdin service, written straight from the walk (no report objects).

``json.dumps(infer(...).to_dict())`` builds a :class:`featcli.shape.report.StageReport` per stage, then a dict
per stage, then encodes them: for one query line that costs more than the walk itself. :class:`Answers`
writes the same bytes from :func:`featcli.shape.infer.walk`'s rows: each stage's ``"spec"``/``"op"`` text
once per distinct stage, numbers with ``str``, strings with the json module's own (C) string encoder, and
only the small dicts (``config``, ``solved``, ``options``) through its encoder. The text is exactly the
compact encoding of :meth:`ShapeReport.to_dict` (``separators=(",", ":")``), with or without
``ensure_ascii`` (``tests/shape/test_stdin_golden.py`` compares them line by line).

>>> Answers().answer((1, 3, 8, 8), [], None)
'{"input":[1,3,8,8],"source":null,"stages":[],"output":[1,3,8,8],"params":0,"macs":0}'
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from json.encoder import encode_basestring, encode_basestring_ascii
from typing import Union

from featcli.shape.branches import flatten
from featcli.shape.fast.kept import Kept
from featcli.shape.fast.numbers import Numbers
from featcli.shape.fast.stepkit import Fields, Step, Walk, shape_text
from featcli.shape.fast.steps import compile_step
from featcli.shape.infer import MAX_ELEMENTS, moved, start, step
from featcli.shape.report import ceil_num
from featcli.shape.rules import RULES
from featcli.shape.state import WalkState
from featcli.stages.grammar import MAX_INT
from featcli.stages.registry import REGISTRY
from featcli.stages.spec import Stage, parse_stage

__all__ = ["Answers"]

#: How many distinct stages (their compiled steps) and configs :class:`Answers` keeps (then it starts again).
_STEPS_MAX = 8192
#: A stage, its compiled step (None: its rule walks it always) and its row's ``"spec":..,"op":..,`` text.
Compiled = tuple[Stage, Union[Step, None], str]  # noqa: UP007 - a runtime alias
#: Where a stage of a branching stack stands: the saved tensors it enters and its side branch's JSON name.
Place = tuple[tuple[str, ...], str]


class Answers:
    """Writes the JSON answer of a query: ``{"input": ..., "stages": [...], ...}`` as one line of text.

    Keeps, per distinct stage text, its compiled step (:mod:`featcli.shape.fast.steps`) and the JSON of its
    spec and op, the JSON of configs by stage, channels and last dimension, and the session's receptive-field
    arithmetic (:class:`featcli.shape.fast.numbers.Numbers`): all of it bounded (:class:`Kept`).

    Args:
        ensure_ascii: escape non-ASCII characters (``\\u00e9``), as ``json.dumps`` does by default; the
            service uses raw characters for ASCII query lines (the same text, encoded faster).
    """

    __slots__ = ("_quote", "_encode", "_configs", "_steps", "_numbers")

    def __init__(self, ensure_ascii: bool = False) -> None:
        self._quote = encode_basestring_ascii if ensure_ascii else encode_basestring
        self._encode = json.JSONEncoder(separators=(",", ":"), allow_nan=False, check_circular=False,
                                        ensure_ascii=ensure_ascii).encode
        self._configs: Kept[tuple[str, int, int], str] = Kept(_STEPS_MAX)
        self._steps: Kept[str, Compiled] = Kept(_STEPS_MAX)
        self._numbers = Numbers()

    def error(self, message: str, line: int) -> str:
        """``{"error": message, "line": line}``."""
        return f'{{"error":{self._quote(message)},"line":{line}}}'

    def config_text(self, stage: Stage, shape: tuple[int, ...]) -> str:
        """The JSON of the config the stage's rule reports at an input ``shape`` it accepts."""
        st = WalkState((1, 1, 1, 1))
        st.shape = shape
        return self._encode(RULES[REGISTRY[stage.op].shape_rule](st, stage).config)

    def _compile(self, stage: Stage) -> Compiled:
        """The stage, its compiled step and its row's ``"spec":..,"op":..,`` JSON (see :meth:`_write`), kept by
        the stage's text."""
        spec_op = f'"spec":{self._quote(stage.text)},"op":"{stage.op.value}",'
        return self._steps.keep(stage.text, (stage, compile_step(stage, self.config_text, self._numbers), spec_op))

    def answer(self, input_shape: tuple[int, int, int, int], stages: Sequence[Stage], source: str | None, *,
               kernels_dir: str | None = None) -> str:
        """The JSON text of ``infer(input_shape, stages, source=source, kernels_dir=kernels_dir).to_dict()``.

        Raises:
            ShapeError, KernelError: as :func:`featcli.shape.infer.infer` raises them.
        """
        start(input_shape, kernels_dir=kernels_dir)  # every check of the walk's start (a library caller's shape)
        quote, steps = self._quote, self._steps
        entries: list[Compiled] = []
        places: list[Place] = []
        for stage, reads, branch in flatten(stages):
            compiled = steps.get(stage.text)
            entries.append(compiled if compiled is not None and compiled[0] is stage else self._compile(stage))
            places.append((reads, "null" if branch is None else quote(branch)))
        return self._write(input_shape, kernels_dir, shape_text(input_shape),
                           "null" if source is None else quote(source), entries, places)

    def answer_texts(self, input_shape: tuple[int, int, int, int], texts: Sequence[str], *,
                     kernels_dir: str | None = None) -> str:
        """:meth:`answer` for stage texts without side branches (no ``(``) and no ``@STACK``, and no source:
        the stages are parsed (all of them first, as the service does) and compiled once per distinct text.

        Raises:
            SpecError: a stage text does not parse (the first such, with its 1-based index).
            ShapeError, KernelError: as :func:`featcli.shape.infer.infer` raises them.
        """
        entries: list[Compiled | None] = list(map(self._steps.get, texts))
        if None in entries:  # a stage not seen before (or dropped from a full cache): parse and compile it
            for k, t in enumerate(texts):
                if entries[k] is None:
                    entries[k] = self._compile(parse_stage(t, k + 1))
        n, c, h, w = input_shape
        if not (n * c * h * w <= MAX_ELEMENTS and 1 <= min(input_shape) and max(input_shape) <= MAX_INT):
            start(input_shape, kernels_dir=kernels_dir)  # raises the walk's own message (the common case inline)
        return self._write(input_shape, kernels_dir, f"[{n},{c},{h},{w}]", "null", entries, None)

    def _write(self, input_shape: tuple[int, int, int, int], kernels_dir: str | None, input_text: str, source: str,
               entries: Sequence[Compiled | None], places: Sequence[Place] | None) -> str:
        """Walk the compiled ``entries`` from an input :func:`featcli.shape.infer.start` accepts and write the
        answer: the one place the fast road spells the keys of an answer and of a stage's row, in
        :meth:`featcli.shape.report.ShapeReport.to_dict`'s order (``places``: per stage, the saved tensors it
        enters and its branch, or None for a stack without branches)."""
        st = Walk(input_shape, False, kernels_dir)
        st.shown = (st.shape, input_text)
        fields = self._fields
        parts: list[str] = []
        append = parts.append
        params = macs = i = 0
        reads: tuple[str, ...] = ()
        branch = "null"
        for entry in entries:
            assert entry is not None
            if places is not None:
                reads, branch = places[i]
            i += 1
            stage, fast, spec_op = entry
            done = fast(st, i) if fast is not None and not reads else None
            if done is None:
                done = fields(st, i, stage, reads)
            in_text, out_text, p, m, rf_jump, formula, notes, config, solved, options = done
            append(f'{{"index":{i},{spec_op}"in":{in_text},"out":{out_text},"params":{p},"macs":{m},{rf_jump},'
                   f'"formula":[{formula}],"notes":[{notes}],"config":{config},"solved":{solved},'
                   f'"options":{options},"branch":{branch}}}')
            params += p
            macs += m
        out, shown = st.shape, st.shown
        return (f'{{"input":{input_text},"source":{source},"stages":[{",".join(parts)}],'
                f'"output":{shown[1] if shown[0] is out else shape_text(out)},"params":{params},"macs":{macs}}}')

    def _fields(self, st: Walk, i: int, stage: Stage, reads: tuple[str, ...]) -> Fields:
        """Stage ``i`` walked by its rule (:func:`featcli.shape.infer.step`): its row as JSON texts."""
        quote, encode, configs = self._quote, self._encode, self._configs
        in_shape, rule_row = step(st, i, stage, reads)
        # A row's config is a function of its stage, the input's channels and last dimension, unless the
        # solver chose a value or w= names files (featcli.shape.state.Row): its text is kept by that key.
        if rule_row.solved is None and not getattr(stage.params, "weights", None):
            ckey = (stage.text, in_shape[1], in_shape[-1])
            config = configs.get(ckey)
            if config is None:
                config = configs.keep(ckey, encode(rule_row.config))
        else:
            config = encode(rule_row.config)
        rf, jump, text = st.rf, st.jump, self._numbers.text
        formulas, notes = rule_row.formulas, rule_row.notes
        done = (shape_text(in_shape), shape_text(rule_row.out), rule_row.params, rule_row.macs,
                f'"rf":[{ceil_num(rf[0])},{ceil_num(rf[1])}],"jump":[{text(jump[0])},{text(jump[1])}]',
                ",".join(map(quote, formulas)), ",".join(map(quote, notes)), config,
                "null" if rule_row.solved is None else encode(rule_row.solved),
                "null" if rule_row.options is None else encode(rule_row.options))
        moved(st, i, stage, rule_row.out)
        return done
