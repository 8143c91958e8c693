"""One name rule for every API input model: printable, not blank, at most 200 characters."""

from __future__ import annotations

import pytest
from mlplane.names import Name, NameOrEmpty
from pydantic import BaseModel, ValidationError

from services.gateway import schemas as gateway
from services.logs import schemas as logs
from services.training import schemas as training
from services.triton_manager import api as serving


class Named(BaseModel):
    name: Name


class MaybeNamed(BaseModel):
    name: NameOrEmpty = ""


@pytest.mark.parametrize(
    "bad",
    ["a\x00b", "a\x07b", "a\x1b[31mb", "a\nb", "a\x7fb", "a\x85b", "a\u2028b", "a\u202eb"],
    ids=["NUL", "BEL", "ESC", "newline", "DEL", "C1", "line-separator", "bidi-override"],
)
def test_a_name_with_a_control_character_is_refused(bad: str):
    with pytest.raises(ValidationError, match="control character"):
        Named(name=bad)
    with pytest.raises(ValidationError, match="control character"):
        MaybeNamed(name=bad)


@pytest.mark.parametrize("bad", ["", "   ", "x" * 201], ids=["empty", "blank", "too-long"])
def test_a_name_is_given_and_not_too_long(bad: str):
    with pytest.raises(ValidationError):
        Named(name=bad)


def test_printable_names_are_kept_as_given():
    for good in ["vision", "Équipe 3 — CV", "日本語", "a/b", "x" * 200]:
        assert Named(name=good).name == good
    assert MaybeNamed().name == "" and MaybeNamed(name="").name == ""


@pytest.mark.parametrize(
    ("model", "body"),
    [
        (gateway.SpaceCreate, {"description": ""}),
        (gateway.SpaceUpdate, {}),
        (gateway.Login, {"password": "p"}),
        (gateway.TokenCreate, {}),
        (gateway.AdminUserCreate, {}),
        (training.TrainingCreate, {"architecture": "linear"}),
        (training.TrainingUpdate, {}),
        (training.DataModelCreate, {}),
        (training.DataModelUpdate, {}),
        (training.ConnectorCreate, {"type": "local"}),
        (training.ClusterCreate, {"manager_url": "http://k", "ingress_url": "http://i"}),
        (serving.ServerCreate, {"host": "h", "port": 1}),
        (serving.ServerUpdate, {}),
        (logs.StatusUpdate, {"id": "x"}),
    ],
    ids=lambda v: v.__name__ if isinstance(v, type) else "",
)
def test_every_input_model_refuses_a_name_with_a_nul(model: type[BaseModel], body: dict):
    with pytest.raises(ValidationError) as refused:
        model.model_validate({**body, "name": "lp\x00x"})
    assert [e["loc"] for e in refused.value.errors()] == [("name",)]
