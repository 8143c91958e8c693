"""API models of the training context: what clients send (`*Create`, `*Update`: unknown fields
refused) and get back (`*Public`), with the field names of seeds 001 and 003. Secrets go in,
never out: a connector's credentials and a cluster's token are write-only."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from mlplane.names import Name, NameOrEmpty
from pydantic import AfterValidator, AliasChoices, BaseModel, ConfigDict, Field

from .bundles import Resources
from .connectors import folder_name, relative_path

Text = Annotated[str, Field(max_length=4000)]
Url = Annotated[str, Field(min_length=1, max_length=2000, pattern=r"^https?://")]
RuntimeUrl = Literal["local://", "kubernetes://"]
RelativePath = Annotated[str, Field(max_length=1000), AfterValidator(relative_path)]
"""A path inside a connector (or under the datasets root): no `..` part, no leading `/`."""
FileKey = Annotated[str, Field(min_length=1, max_length=1000), AfterValidator(relative_path)]
ConnectorName = Annotated[Name, AfterValidator(folder_name)]
"""A connector's name is also the folder its files are fetched into (`data/<name>/`)."""


class Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Output(BaseModel):
    model_config = ConfigDict(extra="ignore")


class Ref(Output):
    id: str


# ---------------------------------------------------------------- trainings


class ConnectorTraining(Input):
    """Data a training reads through a connector: some files, or every file under a prefix."""

    connector_id: Annotated[
        str, Field(validation_alias=AliasChoices("connector_id", "connector", "id"))
    ]
    files: Annotated[list[FileKey], Field(max_length=1000)] = []
    prefix: RelativePath = ""


class TrainingCreate(Input):
    name: Name
    architecture: Annotated[str, Field(min_length=1, max_length=100)]
    configuration: dict[str, Any] = {}
    connectors: Annotated[list[ConnectorTraining], Field(max_length=20)] = []
    data_model_id: str = ""
    gpu_count: Annotated[int, Field(ge=0, le=16)] = 0
    benchmark_ids: Annotated[list[str], Field(max_length=100)] = []
    runtime: RuntimeUrl | None = None
    resources: Resources | None = None


class TrainingUpdate(Input):
    name: Name | None = None
    architecture: Annotated[str, Field(min_length=1, max_length=100)] | None = None
    configuration: dict[str, Any] | None = None
    connector: ConnectorTraining | None = None
    benchmark_ids: list[str] | None = None


class Metric(Output):
    name: str
    value: float


class CheckpointPublic(Output):
    id: str
    name: str
    training_id: str
    space_id: str
    version: int
    format: str
    uri: str
    key: str
    files: dict[str, str]
    metrics: dict[str, float]
    signature: dict[str, Any] = {}
    created_at: str


class BundleRef(Output):
    bundle_id: str
    code_hash: str
    data_hash: str
    parameters_hash: str
    bundle_hash: str
    entrypoint: str


class BundlePublic(Output):
    """An uploaded source bundle: its content hashes, manifest and size (its files stay in the
    artifact store; `GET /train/{workspace}/{job_id}/bundle` downloads them)."""

    id: str
    space_id: str
    code_hash: str
    data_hash: str
    parameters_hash: str
    bundle_hash: str
    archive_sha256: str
    manifest: dict[str, Any]
    files: int
    unpacked_bytes: int
    created_at: str
    created_by: str


class TrainingPublic(Output):
    id: str
    job_id: str
    name: str
    status: str
    source: str
    architecture: str
    configuration: dict[str, Any]
    connectors: list[dict[str, Any]]
    data_model_id: str
    gpu_count: int
    benchmark_ids: list[str]
    runtime: str
    resources: dict[str, Any]
    owner: str
    bundle: BundleRef | None
    checkpoints: list[CheckpointPublic]
    metrics: list[Metric]
    reason: str
    exit_code: int | None
    job_name: str
    created_at: str
    created_by: str
    updated_at: str
    started_at: str | None
    finished_at: str | None


class ModelsPage(Output):
    page_id: int
    page_size: int
    sort_by: str | None
    count: int
    has_more: bool
    data: list[CheckpointPublic]


class JobInfo(TrainingPublic):
    models: ModelsPage


class Inspect(Output):
    space_id: str
    queue: list[TrainingPublic]
    running: list[TrainingPublic]
    resources: dict[str, Any]


class Killed(Output):
    id: str
    status: str
    message: str


# ---------------------------------------------------------------- data models


class DataModelCreate(Input):
    name: Name
    description: Text = ""


class DataModelUpdate(Input):
    name: Name | None = None
    description: Text | None = None


class DataModelPublic(Output):
    id: str
    name: str
    description: str
    created_at: str
    updated_at: str


# ---------------------------------------------------------------- connectors


class S3Config(Input):
    bucket: Annotated[str, Field(min_length=3, max_length=63)]
    region: str = "us-east-1"
    prefix: str = ""
    endpoint_url: Url | None = None
    access_key_id: Annotated[
        str | None, Field(validation_alias=AliasChoices("access_key_id", "access_key"))
    ] = None
    secret_access_key: Annotated[
        str | None, Field(validation_alias=AliasChoices("secret_access_key", "secret_key"))
    ] = None


class LocalConfig(Input):
    path: Annotated[RelativePath, Field(max_length=500)] = ""
    """A folder relative to the datasets root (`MLPLANE_TRAINING_DATA_ROOT`)."""


class ConnectorCreate(Input):
    name: ConnectorName
    type: Literal["aws-s3", "local"]
    s3: S3Config | None = None
    local: LocalConfig | None = None


class ConnectorPublic(Output):
    id: str
    name: str
    type: str
    provider: str
    region: str
    status: str
    bucket: str = ""
    prefix: str = ""
    path: str = ""
    has_credentials: bool
    files: list[dict[str, Any]] = []
    scanned_at: str | None = None
    created_at: str
    created_by: str


class ScanRequest(Input):
    files: Annotated[list[FileKey], Field(max_length=1000)] = []


class FilePublic(Output):
    key: str
    size: int
    last_modified: str


class ScanPublic(Output):
    id: str
    files: list[dict[str, Any]]


# ---------------------------------------------------------------- clusters


class ClusterCreate(Input):
    manager_url: Url
    ingress_url: Url
    name: NameOrEmpty = ""
    token: Annotated[str | None, Field(max_length=8000)] = None
    allow_insecure_http: bool = False
    """Platform administrators only: the token may be sent to an http:// manager URL (a lab
    cluster on a trusted network). Otherwise a token goes only over https."""


class ClusterUpdate(Input):
    manager_url: Url | None = None
    ingress_url: Url | None = None
    token: Annotated[str | None, Field(max_length=8000)] = None
    allow_insecure_http: bool | None = None
    """Platform administrators only (see ClusterCreate)."""


class ClusterPublic(Output):
    id: str
    name: str
    manager_url: str
    ingress_url: str
    token: None = Field(None, description="Write-only: never returned")
    has_token: bool
    allow_insecure_http: bool = False
    status: str = "unknown"
    """What the last probe of its API found: ready, unreachable, refused by the endpoint,
    credentials rejected, or not allowed (never the cluster's own answer)."""
    status_at: str | None = None
    created_at: str
    updated_at: str


class ClusterStatus(ClusterPublic):
    inference: dict[str, Any]
    ingress: dict[str, Any]
    nodes: list[dict[str, Any]]
    resources: dict[str, Any]
