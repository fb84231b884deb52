"""The one configuration object, read from the environment (prefix ``TOLLGATE_``).

Workers read it at start-up. The workflow never does: everything a workflow needs (timeouts, budgets, queue
names) travels inside its input, built from these settings by the client that starts the run.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

LlmProvider = Literal["local", "openai", "openai-compatible"]
LocalModel = Literal["qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b"]


# Measured on 2 cores with Qwen2.5-Coder-1.5B (docs/benchmarks.md): a call reads about 40 tokens a second and writes
# about 10, so one chunk's call takes up to a minute or two, and a second request waits for the first.
LOCAL_MODEL_SIZING: dict[str, object] = {
    "max_parallel_chunks": 1,
    "ai_review_sample": 6,
    # a call labels at most 16 titles (about 400 tokens out, a minute), so three queued at the one slot fit the
    # LLM timeout; a chunk of many distinct titles is several calls, and its step is given time for them
    "labels_per_call": 16,
    "analysis_timeout_seconds": 1800.0,
    "validation_timeout_seconds": 240.0,
    "heartbeat_timeout_seconds": 60.0,
    "llm_timeout_seconds": 280.0,
}


class Settings(BaseSettings):
    """Tollgate's settings; every field can be set as ``TOLLGATE_<FIELD>``."""

    model_config = SettingsConfigDict(env_prefix="TOLLGATE_", extra="ignore", validate_assignment=False)

    # Temporal
    temporal_address: str = "127.0.0.1:7233"
    temporal_namespace: str = "default"
    temporal_ui_url: str = "http://127.0.0.1:8233"
    orchestrator_queue: str = "tollgate-orchestrator"
    analyzer_queue: str = "tollgate-analyzer"
    validator_queue: str = "tollgate-validator"

    # Where uploaded exports, chunks, step outputs and reports live: a directory or file:// URL, or an object store
    # URL such as s3://bucket/prefix (credentials from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY).
    artifact_root: str = ".tollgate/artifacts"
    s3_endpoint_url: str | None = Field(default=None, description="An S3-compatible endpoint (MinIO), else "
                                        "AWS_ENDPOINT_URL, else AWS.")

    # LLM. Keys are read here by the workers only; they never enter workflow inputs or history.
    llm_provider: LlmProvider | None = Field(
        default=None, description="None picks openai when OPENAI_API_KEY is set, else openai-compatible "
        "when a base URL is set, else the embedded local model."
    )
    llm_model: str | None = None
    llm_base_url: str | None = None
    llm_api_key: SecretStr | None = None
    openai_api_key: SecretStr | None = Field(default=None, validation_alias="OPENAI_API_KEY")
    llm_timeout_seconds: float = 110.0
    llm_seed: int = 7
    llm_retry_temperature: float = Field(default=0.4, ge=0.0, le=2.0)
    local_model: LocalModel = "qwen2.5-coder-1.5b"
    local_model_host: str = "127.0.0.1"
    local_model_port: int = 8091
    local_model_slots: int = Field(default=1, ge=1, le=16)
    local_model_context: int = Field(default=8192, ge=1024, description="Context tokens per slot.")
    model_cache_dir: Path | None = None

    # The pipeline (defaults for a run; each run carries its own copy)
    contact_chunk_size: int = Field(default=200, ge=1, le=2000)
    opportunity_chunk_size: int = Field(default=200, ge=1, le=2000)
    chunks_per_batch: int = Field(default=50, ge=1, le=500)
    max_parallel_chunks: int = Field(default=4, ge=1, le=256)
    gate_attempts: int = Field(default=3, ge=1, le=10)
    labels_per_call: int = Field(default=100, ge=1, le=2000, description="At most this many distinct titles (or deal "
                                 "profiles) in one model call; a chunk with more is asked in several calls, so that "
                                 "no call outgrows the model's timeout.")
    ai_review_sample: int = Field(default=25, ge=0, le=2000)
    run_token_budget: int = Field(default=0, ge=0, description="Tokens a run may spend; 0 is no limit.")
    analysis_timeout_seconds: float = 120.0
    validation_timeout_seconds: float = 30.0
    heartbeat_timeout_seconds: float = Field(
        default=20.0, description="A worker silent this long is presumed dead and its step is retried elsewhere."
    )
    ingest_timeout_seconds: float = 1800.0
    activity_max_attempts: int = Field(
        default=5, ge=1, le=100, description="Temporal attempts of one analysis or validation activity (timeouts, "
        "provider errors) before the step fails; a gate rejection is not one of them.")

    on_spent: Literal["review", "quarantine", "fail"] = Field(
        default="review", description="What a step whose gate budget is spent does: wait for a person's decision "
        "(`tollgate review`), leave its rows out of the report (which says so), or fail the run.")
    review_timeout_seconds: float = Field(default=86_400.0, gt=0, description="review: a step nobody decides on "
                                          "within this is quarantined.")
    reuse_validated: bool = Field(default=True, description="Reuse a step's validated output from an earlier run "
                                  "over the same rows, prompts, rules and model (no model call).")

    sequential_branches: bool = Field(default=False, description="Benchmarks only: one branch after the other.")
    keep_extra_columns: bool = Field(default=False, description="Copy export columns the analysis does not use "
                                     "into the store; off, they are dropped at ingest.")
    run_retention_days: float = Field(default=30.0, gt=0, description="Run artifacts (chunks, outputs, reports) "
                                      "older than this are deleted by `tollgate prune`.")

    amount_decimal_separator: Literal[".", ","] = Field(
        default=".", description="How the opportunities export writes decimals; an amount that could be read "
        "either way is refused, never guessed.")

    # Temporal connection security: TLS (with a client certificate for mTLS) or an API key (Temporal Cloud).
    temporal_tls: bool = False
    temporal_tls_ca: Path | None = None
    temporal_tls_cert: Path | None = None
    temporal_tls_key: Path | None = None
    temporal_api_key: SecretStr | None = None

    # Worker versioning (docs/reliability.md): with a deployment name, each worker registers as that deployment's
    # build `worker_build_id`; workflows are auto-upgrade, so changes to running workflows go through patches.
    worker_deployment: str | None = None
    worker_build_id: str = "dev"

    # Workers
    max_concurrent_activities: int = Field(default=4, ge=1, le=1000)
    shutdown_grace_seconds: float = Field(default=30.0, ge=0, description="On SIGTERM, in-flight activities get "
                                          "this long to finish before they are cancelled and handed back to Temporal; "
                                          "a container's stop timeout must be longer.")
    health_file: Path | None = Field(default=None, description="A worker touches this file every few seconds while "
                                     "it runs; `python -m shared.health` (the images' health check) reads its age.")

    # Tracing: the standard OpenTelemetry variables say where spans go; nothing is exported without them.
    otel_exporter_otlp_endpoint: str | None = Field(default=None, validation_alias="OTEL_EXPORTER_OTLP_ENDPOINT")
    otel_exporter_otlp_traces_endpoint: str | None = Field(
        default=None, validation_alias="OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
    )
    otel_traces_exporter: str | None = Field(default=None, validation_alias="OTEL_TRACES_EXPORTER")
    trace_dir: Path | None = Field(default=None, description="Also write spans here as JSON lines (tollgate trace).")
    jaeger_url: str = "http://127.0.0.1:16686"
    trace_content: bool = Field(default=False, description="Allow prompt text in span attributes (off: never).")

    # Encryption of what Temporal stores (shared/codec.py): on unless turned off on purpose.
    encrypt_payloads: bool = True
    payload_keys: SecretStr | None = Field(default=None, description="id:base64key[,id:base64key…]; the first "
                                           "seals, all open (rotation).")
    payload_key_file: Path = Field(default=Path(".tollgate/payload-keys.json"), description="A JSON keyring, read "
                                   "when TOLLGATE_PAYLOAD_KEYS is not set; `tollgate dev` creates it.")

    # Progress events
    redis_url: str = "redis://127.0.0.1:6379/0"
    progress_buffer_size: int = Field(default=10_000, ge=1, description="Events held while Redis is away.")

    # USD per million tokens (input, output); a model not listed costs nothing, as the local model does.
    prices: dict[str, tuple[float, float]] = Field(default_factory=lambda: {
        "gpt-4o-mini": (0.15, 0.60), "gpt-4o": (2.50, 10.00), "gpt-4.1-mini": (0.40, 1.60),
    })

    def cost_of(self, provider: str, model: str, metrics: object) -> float:
        """What one call cost, from the price table; the embedded local model is free."""
        if provider == "local" or model not in self.prices:
            return 0.0
        price_in, price_out = self.prices[model]
        tokens_in = int(getattr(metrics, "input_tokens", 0) or 0)
        tokens_out = int(getattr(metrics, "output_tokens", 0) or 0)
        return round((tokens_in * price_in + tokens_out * price_out) / 1_000_000, 6)

    @model_validator(mode="after")
    def _sized_for_the_provider(self) -> Settings:
        """The embedded model serves one request at a time on a laptop's cores: unless set explicitly, the pipeline
        is sized for it (one chunk in flight per branch, patience for a request queued behind another, a smaller
        AI review), so that `tollgate dev` + `tollgate run` work on any export, not only the demo's."""
        if self.resolved_provider() == "local":
            for name, value in LOCAL_MODEL_SIZING.items():
                if name not in self.model_fields_set:
                    setattr(self, name, value)
        return self

    def jaeger_link_configured(self) -> bool:
        """A trace link is printed only where it can open something: a Jaeger URL set on purpose, or traces being
        exported (to a collector whose UI the default URL most likely is)."""
        return "jaeger_url" in self.model_fields_set or bool(
            self.otel_exporter_otlp_endpoint or self.otel_exporter_otlp_traces_endpoint)

    def resolved_provider(self) -> LlmProvider:
        """The provider in force: the explicit one, else the first whose credentials are present."""
        if self.llm_provider is not None:
            return self.llm_provider
        if self.openai_api_key is not None:
            return "openai"
        if self.llm_base_url:
            return "openai-compatible"
        return "local"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()
