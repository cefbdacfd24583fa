"""The use cases' views (operations/views.py, job_views.py) against the API's response models.

A route returns a view and FastAPI validates it against the route's response model from its
attributes: a field the model has and the view lacks fails (or, with a default, is silently sent
as the default), a field the view has and the model lacks is silently dropped. So each view has
exactly its model's fields.
"""

from __future__ import annotations

import dataclasses

import pytest
from pydantic import BaseModel

from hposteer.service.api import artifact_schemas as art
from hposteer.service.api import dataset_schemas as ds
from hposteer.service.api import schemas as api
from hposteer.service.core.datasets import DatasetFile
from hposteer.service.operations import job_views, views
from hposteer.service.operations.pilot_jobs import HeartbeatAnswer

PAIRS: list[tuple[type, type[BaseModel]]] = [
    (job_views.RegistrationView, api.RegisterOut),
    (job_views.SandboxRefView, api.SandboxRefOut),
    (job_views.SegmentRefView, api.SegmentRefOut),
    (job_views.RestoreRefView, art.RestoreRefOut),
    (job_views.JobCheckpointView, art.JobCheckpointOut),
    (job_views.JobMetaView, art.JobMetaOut),
    (job_views.JobMetricsView, art.JobMetricsOut),
    (job_views.JobTrainingFileView, ds.JobTrainingFileOut),
    (job_views.JobTrainingView, ds.JobTrainingOut),
    (job_views.JobView, api.JobOut),
    (job_views.AcquireView, api.AcquireOut),
    (job_views.CompletionView, api.CompleteOut),
    (HeartbeatAnswer, api.HeartbeatOut),
    (views.ProgressView, api.ProgressOut),
    (views.BestView, api.BestOut),
    (views.SegmentView, api.SegmentOut),
    (views.TaskView, api.TaskDetailOut),
    (views.AttemptView, api.AttemptOut),
    (views.AttemptDetailView, api.AttemptDetailOut),
    (views.PointView, api.PointOut),
    (views.PointView, api.PointDetailOut),
    (views.TaskListView, api.TaskListOut),
    (views.PointListView, api.PointListOut),
    (views.RetryView, api.RetryOut),
    (views.ReportView, api.ReportOut),
    (views.ReportListView, api.ReportListOut),
    (views.SandboxView, api.SandboxOut),
    (views.DatasetSummaryView, ds.DatasetSummaryOut),
    (views.DatasetView, ds.DatasetOut),
    (views.DatasetListView, ds.DatasetListOut),
    (DatasetFile, ds.DatasetFileOut),
    (views.UploadView, art.UploadOut),
    (views.ArtifactView, art.ArtifactOut),
    (views.ArtifactListView, art.ArtifactListOut),
    (views.AttemptMetaView, art.AttemptMetaOut),
    (views.PointMetaView, art.PointMetaOut),
    (views.MetaListView, art.MetaListOut),
]
# Views sent through a smaller model as well: a listing's tasks carry no detail.
SUBSETS: list[tuple[type, type[BaseModel]]] = [(views.TaskView, api.TaskSummaryOut)]
NOT_SENT = {job_views.JobArtifactsView}  # parts of a JobView while it is built


@pytest.mark.parametrize(("view", "model"), PAIRS, ids=lambda t: t.__name__)
def test_a_view_has_exactly_its_response_models_fields(view: type, model: type[BaseModel]) -> None:
    ours = [f.name for f in dataclasses.fields(view)]
    theirs = list(model.model_fields)
    assert set(ours) - set(theirs) == set(), f"{view.__name__} has fields {model.__name__} does not send"
    assert set(theirs) - set(ours) == set(), f"{model.__name__} sends fields {view.__name__} lacks"


@pytest.mark.parametrize(("view", "model"), SUBSETS, ids=lambda t: t.__name__)
def test_a_summary_model_sends_a_part_of_its_view(view: type, model: type[BaseModel]) -> None:
    missing = set(model.model_fields) - {f.name for f in dataclasses.fields(view)}
    assert not missing, f"{model.__name__} sends fields {view.__name__} lacks: {sorted(missing)}"


def test_every_view_is_paired_with_a_response_model() -> None:
    defined = {
        v
        for module in (views, job_views)
        for v in vars(module).values()
        if dataclasses.is_dataclass(v) and isinstance(v, type) and v.__module__ == module.__name__
    }
    unpaired = sorted(v.__name__ for v in defined - {view for view, _ in PAIRS} - NOT_SENT)
    assert not unpaired, f"views no test pairs with a response model: {unpaired}"


def test_the_job_is_sent_in_the_order_pilots_always_got_it() -> None:
    assert list(api.JobOut.model_fields) == [f.name for f in dataclasses.fields(job_views.JobView)]
    # New fields go after the ones pilots always got (report_file: docs/multi-fidelity.md).
    assert list(api.JobOut.model_fields)[-5:] == ["checkpoint", "meta", "metrics", "training", "report_file"]
