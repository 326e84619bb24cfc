"""Compiled steps (featcli.shape.fast.steps) write exactly what the rules and ``ShapeReport.to_dict()`` say.

Every op family with a step, on thousands of random input shapes (tiny, empty-making, odd, huge), after
prefixes that leave integer and fractional receptive fields and jumps, and 2-D tensors: the JSON text of
:class:`featcli.shape.fast.answers.Answers` equals ``json.dumps`` of :func:`featcli.shape.infer.infer`'s report,
and a stack the rules refuse is refused with the same message.
"""

from __future__ import annotations

import json
import random

import pytest

from featcli.errors import FeatcliError
from featcli.shape.fast.answers import Answers
from featcli.shape.fast.numbers import Numbers
from featcli.shape.fast.stepkit import ConfigText, Fields, Step, Walk
from featcli.shape.fast.steps import compile_step
from featcli.shape.infer import infer
from featcli.stages.grammar import MAX_INT
from featcli.stages.spec import Stage, parse_stage

STAGES = [
    "conv:out=8,k=3,s=2,p=1", "conv:k=7,s=2,p=3", "conv:k=3x5,s=1x2,p=2x0,d=2", "conv:k=3,p=same", "conv:k=4,p=same",
    "conv:out=6,k=1,g=3,bias=0", "conv:k=5,p=valid,pm=replicate", "conv:out=4,k=2,s=3", "conv:k=1", "conv:out=2,g=2",
    "maxpool:k=2", "maxpool:k=3,s=2,p=1", "maxpool:k=3x2,s=1,d=2", "avgpool:k=2,s=1", "avgpool:k=3,s=2,p=1,cip=0",
    "max:k=5,s=3", "convt:k=2,s=2", "convt:out=8,k=4,s=2,p=1", "convt:k=3,s=2,op=1", "convt:k=3x2,s=3x1,d=2,g=3",
    "convt:k=1,s=1,p=0,bias=0", "relu", "sigmoid", "dropout:p=0.25", "leakyrelu:slope=0.2", "softmax", "bn",
    "bn:eps=0.001", "gap", "gmp", "adaptiveavg:o=3", "adaptivemax:o=2x5", "adaptiveavg:o=7", "flatten",
    "linear:out=10", "linear:out=3,bias=0", "gelu", "gelu:approx=tanh", "silu", "hardswish", "hardsigmoid", "relu6",
    "conv:k=3,p=?", "conv:out=8,k=3,s=2,p=?", "conv:k=5x2,s=3x1,d=2,p=?", "conv:k=3,p=?,pm=replicate",
    "maxpool:k=3,s=2,ceil=1", "avgpool:k=3,s=2,p=1,ceil=1", "maxpool:k=2,ceil=1", "maxpool:k=3x2,s=3x2,d=2,ceil=1",
    "avgpool:k=5,s=4,p=2,ceil=1", "maxpool:k=3,s=2,p=?", "avgpool:k=2,s=2,p=?", "maxpool:k=3x5,s=1x2,p=?",
]
PREFIXES = ["", "convt:k=2,s=2", "convt:k=3,s=3 conv:k=3,s=2", "adaptiveavg:o=3", "adaptiveavg:o=3x7 maxpool:k=2",
            "gap flatten", "flatten", "conv:k=3,s=2 convt:k=2,s=2 convt:k=2,s=2"]


def _size(rng: random.Random) -> int:
    return rng.choice([rng.randint(1, 12), rng.randint(1, 300), rng.randint(1, 3000), MAX_INT // rng.randint(1, 4)])


def _reference(shape: tuple[int, int, int, int], texts: list[str]) -> str:
    try:
        return json.dumps(infer(shape, [parse_stage(t) for t in texts]).to_dict(), separators=(",", ":"))
    except FeatcliError as exc:
        return f"error: {exc}"


def _answer(answers: Answers, shape: tuple[int, int, int, int], texts: list[str]) -> str:
    try:
        return answers.answer(shape, [parse_stage(t) for t in texts], None)
    except FeatcliError as exc:
        return f"error: {exc}"


def test_every_listed_stage_has_a_step() -> None:
    answers = Answers()
    for text in STAGES:
        assert compile_step(parse_stage(text), answers.config_text, Numbers()) is not None, text


@pytest.mark.parametrize("text", STAGES)
def test_steps_write_what_the_rules_report(text: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from featcli.shape.fast import answers as module

    taken = []  # the stage texts whose step wrote the answer (rather than leaving the stage to its rule)

    def counted(stage: Stage, config_text: ConfigText, numbers: Numbers) -> Step | None:
        step = compile_step(stage, config_text, numbers)
        if step is None:
            return None

        def wrapped(st: Walk, i: int) -> Fields | None:
            done = step(st, i)
            if done is not None:
                taken.append(stage.text)
            return done

        return wrapped

    monkeypatch.setattr(module, "compile_step", counted)
    rng = random.Random(text)
    answers = Answers()
    refused = 0
    for n in range(120):
        shape = (rng.choice([1, 1, 2, 7]), rng.choice([1, 2, 3, 6, 64]), _size(rng), _size(rng))
        texts = [*PREFIXES[n % len(PREFIXES)].split(), text, text] if n % 3 else [text]
        want = _reference(shape, texts)
        refused += want.startswith("error")
        assert _answer(answers, shape, texts) == want, (shape, texts)
    assert refused < 100
    assert taken.count(text) > 30  # the step itself wrote many of the answers


JOINS = ["save:a conv:k=3,p=1 bn relu conv:k=3,p=1 add:a relu", "save:s maxpool:k=2 conv:k=3,p=1 convt:k=2,s=2 cat:s",
         "save:a conv:k=3 add:a", "save:a conv:out=7,k=1 cat:a", "cat:b", "save:a save:b add:a cat:b cat:b",
         "convt:k=2,s=2 save:a adaptiveavg:o=3 conv:k=1 cat:a", "convt:k=3,s=2 save:a conv:k=3,p=1 add:a",
         "save:a gap flatten save:f linear:out=4 cat:f", "save:a flatten add:a", "save:a conv:out=3,k=1 add:a"]


@pytest.mark.parametrize("stack", JOINS)
def test_join_steps_write_what_the_rules_report(stack: str) -> None:
    """save/add/cat (featcli.shape.fast.joins): the same text as the rules, refusals included, on both roads."""
    rng = random.Random(stack)
    answers, texts = Answers(), stack.split()
    for _ in range(150):
        shape = (rng.choice([1, 2, 7]), rng.choice([1, 3, 6, 64, MAX_INT]), _size(rng), _size(rng))
        want = _reference(shape, texts)
        assert _answer(answers, shape, texts) == want, (shape, texts)
        try:
            got = answers.answer_texts(shape, texts)
        except FeatcliError as exc:
            got = f"error: {exc}"
        assert got == want, (shape, texts)
    assert compile_step(parse_stage(texts[-1]), answers.config_text, Numbers()) is not None


RULED = ["upsample:sf=1.5,mode=bilinear", "upsample:sf=0.3x2,rsf=1 groupnorm:g=2 layernorm", "upsample:o=7x9 mul:b",
         "save:a gap hardsigmoid mul:a", "save:a conv:k=3,p=1 'mul:a(gap conv:k=1 sigmoid)' gelu",
         "save:a flatten mul:a"]


@pytest.mark.parametrize("stack", RULED)
def test_stages_without_steps_are_walked_by_their_rules(stack: str) -> None:
    """upsample, the norms and mul have no compiled step: the fast road hands them to their rules, same text."""
    from featcli.stages.spec import parse_stages, split_stack

    rng = random.Random(stack)
    answers, texts = Answers(), split_stack(stack.replace("'", ""))
    for _ in range(60):
        shape = (rng.choice([1, 2, 7]), rng.choice([1, 2, 6, 64]), _size(rng), _size(rng))
        try:
            want = json.dumps(infer(shape, parse_stages(texts)).to_dict(), separators=(",", ":"))
        except FeatcliError as exc:
            want = f"error: {exc}"
        try:
            got = answers.answer(shape, parse_stages(texts), None)
        except FeatcliError as exc:
            got = f"error: {exc}"
        assert got == want, (shape, texts)


SOLVED = ["conv:k=3,s=2,p=?16", "conv:k=7,s=3,p=?5x9", "maxpool:k=3,s=2,p=?7x6", "avgpool:k=5,s=1,p=?20",
          "conv:k=3,p=?,pm=reflect", "maxpool:k=3,s=2,p=?,ceil=1"]


@pytest.mark.parametrize("text", SOLVED)
def test_solved_steps_write_what_the_rules_report(text: str) -> None:
    """p=? towards a target size (hits and refusals with their nearest options), and the p=? stages the
    rule always walks (reflect, ceil): the same text as the rules."""
    rng = random.Random(text)
    answers = Answers()
    for _ in range(200):
        shape = (1, rng.choice([1, 3]), rng.choice([rng.randint(1, 60), _size(rng)]), rng.randint(1, 60))
        assert _answer(answers, shape, [text]) == _reference(shape, [text]), (shape, text)
