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

from featcli.shape.branches import flatten
from featcli.shape.fast.steps import Step, compile_step
from featcli.shape.infer import MAX_ELEMENTS, moved, start, step
from featcli.shape.report import ceil_num, number_text
from featcli.shape.rules import RULES
from featcli.shape.state import WalkState
from featcli.stages.grammar import MAX_INT
from featcli.stages.registry import REGISTRY
from featcli.stages.spec import Stage, parse_stage

__all__ = ["Answers"]

#: How many distinct stages (their compiled steps) and configs :class:`Answers` keeps (then it starts again).
_STEPS_MAX = 8192


def _shape(shape: tuple[int, ...]) -> str:
    if len(shape) == 4:
        return f"[{shape[0]},{shape[1]},{shape[2]},{shape[3]}]"
    return f"[{','.join(map(str, shape))}]"


class Answers:
    """Writes the JSON answer of a query: ``{"input": ..., "stages": [...], ...}`` as one line of text.

    Keeps, per distinct stage text, the JSON of its spec and op and its compiled step
    (:mod:`featcli.shape.fast.steps`), and the JSON of configs by stage, channels and last dimension.

    Args:
        ensure_ascii: escape non-ASCII characters (``\\u00e9``), as ``json.dumps`` does by default; the
            service uses raw characters for ASCII query lines (the same text, encoded faster).
    """

    __slots__ = ("_quote", "_encode", "_configs", "_steps")

    def __init__(self, ensure_ascii: bool = False) -> None:
        self._quote = encode_basestring_ascii if ensure_ascii else encode_basestring
        self._encode = json.JSONEncoder(separators=(",", ":"), allow_nan=False, check_circular=False,
                                        ensure_ascii=ensure_ascii).encode
        self._configs: dict[tuple[str, int, int], str] = {}
        self._steps: dict[str, tuple[Stage, Step | None, str]] = {}

    def error(self, message: str, line: int) -> str:
        """``{"error": message, "line": line}``."""
        return f'{{"error":{self._quote(message)},"line":{line}}}'

    def config_text(self, stage: Stage, shape: tuple[int, ...]) -> str:
        """The JSON of the config the stage's rule reports at an input ``shape`` it accepts."""
        st = WalkState((1, 1, 1, 1))
        st.shape = shape
        return self._encode(RULES[REGISTRY[stage.op].shape_rule](st, stage).config)

    def _compile(self, stage: Stage) -> tuple[Stage, Step | None, str]:
        """The stage, its compiled step and its ``"spec":..,"op":..,`` JSON, kept by the stage's text."""
        if len(self._steps) >= _STEPS_MAX:
            self._steps.clear()
        head = f'"spec":{self._quote(stage.text)},"op":"{stage.op.value}",'
        compiled = self._steps[stage.text] = (stage, compile_step(stage, head, self.config_text), head)
        return compiled

    def answer(self, input_shape: tuple[int, int, int, int], stages: Sequence[Stage], source: str | None, *,
               kernels_dir: str | None = None) -> str:
        """The JSON text of ``infer(input_shape, stages, source=source, kernels_dir=kernels_dir).to_dict()``.

        Raises:
            ShapeError, KernelError: as :func:`featcli.shape.infer.infer` raises them.
        """
        quote, steps, compile_, row = self._quote, self._steps, self._compile, self._row
        st = start(input_shape, kernels_dir=kernels_dir)
        parts = []
        params = macs = i = 0
        for stage, reads, branch in flatten(stages):
            i += 1
            compiled = steps.get(stage.text)
            if compiled is None or compiled[0] is not stage:
                compiled = compile_(stage)
            fast = compiled[1]
            if fast is not None and not reads:
                done = fast(st, i, "null" if branch is None else quote(branch))
                if done is None:
                    done = row(st, i, stage, reads, branch, compiled[2])
            else:
                done = row(st, i, stage, reads, branch, compiled[2])
            parts.append(done[0])
            params += done[1]
            macs += done[2]
        return (f'{{"input":{_shape(input_shape)},"source":{"null" if source is None else quote(source)},'
                f'"stages":[{",".join(parts)}],"output":{_shape(st.shape)},"params":{params},"macs":{macs}}}')

    def answer_texts(self, input_shape: tuple[int, int, int, int], texts: Sequence[str], *,
                     kernels_dir: str | None = None) -> str:
        """:meth:`answer` for stage texts without side branches (no ``(``) and no ``@STACK``, and no source:
        the stages are parsed (all of them first, as the service does) and compiled once per distinct text.

        Raises:
            SpecError: a stage text does not parse (the first such, with its 1-based index).
            ShapeError, KernelError: as :func:`featcli.shape.infer.infer` raises them.
        """
        steps = self._steps
        try:
            entries: list[tuple[Stage, Step | None, str] | None] = [steps[t] for t in texts]
        except KeyError:  # a stage not seen before (or dropped from a full cache): parse and compile it
            entries = [steps.get(t) for t in texts]
            for k, t in enumerate(texts):
                if entries[k] is None:
                    entries[k] = self._compile(parse_stage(t, k + 1))
        n, c, h, w = input_shape
        if n * c * h * w <= MAX_ELEMENTS and 1 <= min(input_shape) and max(input_shape) <= MAX_INT:
            st = WalkState(input_shape, False, kernels_dir)  # what start() checks and makes, inline
        else:
            st = start(input_shape, kernels_dir=kernels_dir)
        in_text = f"[{n},{c},{h},{w}]"
        st.shown = (st.shape, in_text)
        parts: list[str] = []
        append = parts.append
        params = macs = i = 0
        for entry in entries:
            assert entry is not None
            i += 1
            fast = entry[1]
            done = None if fast is None else fast(st, i, "null")
            if done is None:
                done = self._row(st, i, entry[0], (), None, entry[2])
            text, p, m = done
            append(text)
            params += p
            macs += m
        out, shown = st.shape, st.shown
        return (f'{{"input":{in_text},"source":null,"stages":[{",".join(parts)}],'
                f'"output":{shown[1] if shown[0] is out else _shape(out)},'
                f'"params":{params},"macs":{macs}}}')

    def _row(self, st: WalkState, i: int, stage: Stage, reads: tuple[str, ...], branch: str | None,
             head: str) -> tuple[str, int, int]:
        """Stage ``i`` walked by its rule (:func:`featcli.shape.infer.step`): its JSON object, parameters, MACs."""
        quote, encode, configs = self._quote, self._encode, self._configs
        in_shape, row = step(st, i, stage, reads)
        # A row's config is a function of its stage, the input's channels and last dimension, unless the
        # solver chose a value or w= names files (featcli.shape.state.Row): its text is kept by that key.
        if row.solved is None and not getattr(stage.params, "w", None):
            ckey = (stage.text, in_shape[1], in_shape[-1])
            config = configs.get(ckey)
            if config is None:
                if len(configs) >= _STEPS_MAX:
                    configs.clear()
                config = configs[ckey] = encode(row.config)
        else:
            config = encode(row.config)
        rf, jump = st.rf, st.jump
        rh, rw, jh, jw = rf[0], rf[1], jump[0], jump[1]
        formulas, notes = row.formulas, row.notes
        text = (f'{{"index":{i},{head}"in":{_shape(in_shape)},"out":{_shape(row.out)},'
                f'"params":{row.params},"macs":{row.macs},'
                f'"rf":[{rh if rh.__class__ is int else ceil_num(rh)},{rw if rw.__class__ is int else ceil_num(rw)}],'
                f'"jump":[{number_text(jh)},{number_text(jw)}],'
                f'"formula":[{",".join(map(quote, formulas)) if formulas else ""}],'
                f'"notes":[{",".join(map(quote, notes)) if notes else ""}],'
                f'"config":{config},'
                f'"solved":{"null" if row.solved is None else encode(row.solved)},'
                f'"options":{"null" if row.options is None else encode(row.options)},'
                f'"branch":{"null" if branch is None else quote(branch)}}}')
        moved(st, i, stage, row.out)
        return text, row.params, row.macs
