"""Request and response bodies of the dataset routes (docs/api.md, "Datasets")."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from hposteer.service.api.response_body import ResponseBody


class RegisteredFileIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(..., description="file name in the working directory")
    location: str = Field(..., description="absolute path or http(s)/file URL where the sites find the file")
    sha256: str | None = Field(None, description="checked by the pilot when given")
    size: int | None = Field(None, ge=0)


class DatasetRegistrationIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    files: list[RegisteredFileIn] = Field(..., max_length=100_000)


class DatasetFileOut(ResponseBody):
    name: str
    size: int | None
    sha256: str | None
    location: str | None


class DatasetSummaryOut(ResponseBody):
    name: str
    kind: str = Field(description="uploaded | registered")
    created_at: float
    in_use: bool = Field(description="a task uses it: its files can no longer change")
    file_count: int
    size: int = Field(description="bytes, of the files whose size is known")


class DatasetOut(DatasetSummaryOut):
    files: list[DatasetFileOut]


class DatasetListOut(ResponseBody):
    datasets: list[DatasetSummaryOut]


class JobTrainingFileOut(ResponseBody):
    name: str
    size: int | None
    sha256: str | None
    url: str | None = Field(description="service download path of an uploaded file")
    location: str | None = Field(description="path or URL of a registered file on the sites")


class JobTrainingOut(ResponseBody):
    file: str = Field(description="--evaluationTrainingData: receives the JSON list of the names")
    files: list[JobTrainingFileOut]
