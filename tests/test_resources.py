"""Service answers parsed once into frozen resources, and the progress read from them."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from tunespec.resources import ACTIVE, CREATING, FAILED, Progress, progress_of
from tunespec.service import parse_operation, parse_tuned_model

MODEL = {
    "name": "tunedModels/job-abcdefghij",
    "baseModel": "models/text-bison-001",
    "displayName": "job",
    "state": "ACTIVE",
    "createTime": "2026-01-01T00:00:00Z",
    "tuningTask": {
        "startTime": "2026-01-01T00:00:01Z",
        "completeTime": "2026-01-01T00:01:00Z",
        "snapshots": [{"step": 1, "epoch": 0, "meanLoss": 2.5, "computeTime": "2026-01-01T00:00:02Z"},
                      {"step": 2, "epoch": 1, "meanLoss": 1.5}],
        "hyperparameters": {"epochCount": 1, "batchSize": 2, "learningRate": 0.001},
    },
}
OPERATION = {
    "name": "tunedModels/job-abcdefghij/operations/op1",
    "metadata": {"@type": "type.googleapis.com/google.ai.generativelanguage.v1beta3.CreateTunedModelMetadata",
                 "tunedModel": "tunedModels/job-abcdefghij", "totalSteps": 6, "completedSteps": 2,
                 "completedPercent": 33.3333, "snapshots": [{"step": 2, "epoch": 0, "meanLoss": 1.25}]},
}


def test_a_tuned_model_is_read_once_into_its_fields():
    model = parse_tuned_model(MODEL)
    assert (model.name, model.state, model.base_model, model.display_name) == (
        "tunedModels/job-abcdefghij", ACTIVE, "models/text-bison-001", "job")
    assert (model.create_time, model.start_time, model.complete_time) == (
        "2026-01-01T00:00:00Z", "2026-01-01T00:00:01Z", "2026-01-01T00:01:00Z")
    assert model.hyperparameters == {"epochCount": 1, "batchSize": 2, "learningRate": 0.001}
    assert [(s.step, s.epoch, s.mean_loss) for s in model.snapshots] == [(1, 0, 2.5), (2, 1, 1.5)]
    assert model.snapshots[0].raw["computeTime"] == "2026-01-01T00:00:02Z"  # kept for the report
    assert model.last_snapshot is model.snapshots[-1] and model.error is None


def test_an_operation_carries_its_progress_and_its_error():
    op = parse_operation(OPERATION)
    assert (op.done, op.error, op.tuned_model, op.total_steps, op.completed_steps) == (
        False, None, "tunedModels/job-abcdefghij", 6, 2)
    assert progress_of(op, None) == Progress(step=2, total=6, percent=33.3333, epoch=0, loss=1.25, state="")
    why = {"code": 1, "message": "Tuning was cancelled."}
    cancelled = parse_operation({**OPERATION, "done": True, "error": why})
    assert cancelled.done and cancelled.error and cancelled.error.cancelled
    assert cancelled.error.message == "Tuning was cancelled."
    failed = parse_operation({**OPERATION, "done": True, "error": {"code": 13, "message": "boom"}})
    assert failed.error is not None and not failed.error.cancelled


def test_a_model_without_an_operation_tells_its_progress_from_its_snapshots():
    model = parse_tuned_model({**MODEL, "state": "CREATING"})
    assert progress_of(None, model, total=4) == Progress(step=2, total=4, percent=50.0, epoch=1, loss=1.5,
                                                        state=CREATING)
    assert progress_of(None, parse_tuned_model({"name": "tunedModels/x", "state": "FAILED"})) == Progress(
        state=FAILED)


snapshot = st.fixed_dictionaries(
    {"step": st.integers(1, 10_000), "epoch": st.integers(0, 100)},
    optional={"meanLoss": st.floats(0, 100, allow_nan=False)},
)
metadata = st.fixed_dictionaries(
    {},
    optional={"totalSteps": st.integers(0, 10_000), "completedSteps": st.integers(0, 10_000),
              "completedPercent": st.floats(0, 100, allow_nan=False),
              "snapshots": st.lists(snapshot, max_size=4)},
)


@given(meta=metadata, snaps=st.lists(snapshot, max_size=4), predicted=st.integers(0, 10_000))
def test_progress_prefers_what_the_operation_reports_then_the_snapshots_then_the_prediction(
    meta, snaps, predicted
):
    op = parse_operation({"name": "operations/x", "metadata": meta})
    raw = {"name": "tunedModels/x", "state": "CREATING", "tuningTask": {"snapshots": snaps}}
    model = parse_tuned_model(raw)
    p = progress_of(op, model, predicted)
    seen = meta.get("snapshots") or snaps
    assert p.total == (meta.get("totalSteps") or predicted)
    assert p.step == (meta.get("completedSteps") or (seen[-1]["step"] if seen else 0))
    if meta.get("completedPercent"):
        assert p.percent == meta["completedPercent"]
    elif p.total:
        assert p.percent == 100.0 * p.step / p.total
    else:
        assert p.percent == 0.0
    assert p.loss == (seen[-1].get("meanLoss") if seen else None)
    assert p.epoch == (seen[-1]["epoch"] if seen else 0) and p.state == CREATING
