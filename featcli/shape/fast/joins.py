"""Compiled steps for ``save``, ``add`` and ``cat`` (no side branch): the rules' JSON text, byte for byte.

Like :mod:`featcli.shape.fast.steps` for the other common stages, and checked the same way against the rules of
:mod:`featcli.shape.branches` (``tests/shape/test_steps.py``). A step returns None where the rule has
something to say (no tensor saved under the name, shapes that do not meet, a concatenation too large for
torch), and the rule walks the stage and refuses it with its message.
"""

from __future__ import annotations

from featcli.shape.branches import Tensor
from featcli.shape.fast.numbers import Numbers
from featcli.shape.fast.stepkit import Fields, Step, Walk, shape_text
from featcli.shape.infer import MAX_ELEMENTS
from featcli.shape.state import where
from featcli.stages.grammar import MAX_INT, format_shape
from featcli.stages.params import BranchSpec
from featcli.stages.spec import Stage

__all__ = ["compile_join"]


def compile_join(stage: Stage, numbers: Numbers) -> Step | None:
    """The compiled step of a ``save``, ``add`` or ``cat`` stage without a side branch, else None."""
    sp = stage.params
    op = stage.op.value
    if not isinstance(sp, BranchSpec) or sp.branch or op not in ("save", "add", "cat"):
        return None
    name, text, rf_jump = sp.name, stage.text, numbers.rf_jump
    if op == "save":
        saved = f'{{"name":"{name}"}}'

        def save(st: Walk, i: int) -> Fields | None:
            shape, rf, jump = st.shape, st.rf, st.jump
            st.saved[name] = Tensor(shape, (rf[0], rf[1]), (jump[0], jump[1]), st.spatial,
                                    f"saved at {where(i, text)}")
            st.maker = (i, text)
            shown = st.shown
            if shown[0] is shape:
                s = shown[1]
            else:
                s = shape_text(shape)
                st.shown = (shape, s)
            return s, s, 0, 0, rf_jump(rf, jump), "", "", saved, "null", "null"

        return save
    config = f'{{"name":"{name}","branch":0}}'
    is_add = op == "add"

    def meet(st: Walk, i: int) -> Fields | None:
        other = st.saved.get(name)
        if other is None:
            return None
        a, b = st.shape, other.shape
        if is_add:
            if a != b:
                return None
            out = a
            fs = format_shape(a)
            formula = f'"{fs} + {fs} = {fs}"'
        else:
            if len(a) != len(b) or a[:1] != b[:1] or a[2:] != b[2:]:
                return None
            c = a[1] + b[1]
            total = c
            for d in a[:1] + a[2:]:
                total *= d
            if c > MAX_INT or total > MAX_ELEMENTS:
                return None
            out = (a[0], c, *a[2:])
            formula = f'"C: {a[1]} + {b[1]} = {c}"'
        rf, jump, orf, ojump = st.rf, st.jump, other.rf, other.jump
        rf[0], rf[1] = max(rf[0], orf[0]), max(rf[1], orf[1])
        jump[0], jump[1] = max(jump[0], ojump[0]), max(jump[1], ojump[1])
        shown = st.shown
        in_text = shown[1] if shown[0] is a else shape_text(a)
        out_text = shape_text(out)
        st.shape, st.shown, st.maker = out, (out, out_text), (i, text)
        if len(out) == 4:
            st.spatial = (out[2], out[3])
        return in_text, out_text, 0, 0, rf_jump(rf, jump), formula, "", config, "null", "null"

    return meet
