//! Builds and jobs: what to build, and the answers while and after a job runs.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{ComponentRecord, ErrorStatus, OkStatus};
use crate::model::Job;

/// A component to build from git (`POST /v1/builds`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BuildRequest {
    pub component: String,
    pub tag: String,
    /// The architecture (alias `architecture`); absent: the configured `default_arch`.
    #[serde(
        alias = "architecture",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub arch: Option<String>,
    /// The git repository; may be left out when the service knows the component's repository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// Where to follow a job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct JobLinks {
    /// `/v1/jobs/{id}`
    pub job: String,
    /// `/v1/jobs/{id}/log`
    pub log: String,
    /// `/v1/jobs/{id}/log?follow=true`: streams the log until the job ends.
    pub follow: String,
}

impl JobLinks {
    pub fn new(id: &str) -> Self {
        Self {
            job: format!("/v1/jobs/{id}"),
            log: format!("/v1/jobs/{id}/log"),
            follow: format!("/v1/jobs/{id}/log?follow=true"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum QueuedStatus {
    Queued,
}

/// 202: the build was queued (or joined: the same build was already in
/// flight) and has not ended yet.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct JobAccepted {
    #[schema(inline)]
    pub status: QueuedStatus,
    /// The job's id.
    pub job: String,
    /// True when an identical build was already in flight.
    pub joined: bool,
    pub links: JobLinks,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SuccessStatus {
    Success,
}

/// A component build that succeeded, or was not needed (`cached`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BuildAnswer {
    #[schema(inline)]
    pub status: SuccessStatus,
    /// True when the component was already stored: no job ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached: Option<bool>,
    /// The job's id (not when `cached`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
    pub component: Option<ComponentRecord>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub links: Option<JobLinks>,
}

/// What `POST /v1/builds` answers: done (or cached), or still running.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum BuildOutcome {
    Done(Box<BuildAnswer>),
    Accepted(JobAccepted),
}

/// A failed or interrupted build: the error answer plus the job.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BuildFailed {
    #[schema(inline)]
    pub status: ErrorStatus,
    /// The error, then the end of the job's log.
    #[serde(rename = "errorMessage")]
    pub error_message: String,
    /// `build_failed` (422) or `interrupted` (503: the service restarted during the build).
    pub code: String,
    /// The job's id.
    pub job: String,
    pub links: JobLinks,
}

/// One job.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct JobAnswer {
    #[schema(inline)]
    pub status: OkStatus,
    pub job: Job,
    /// From start to end (or now); null before it starts.
    pub duration_secs: Option<f64>,
    pub links: JobLinks,
}

/// The newest jobs first.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct JobList {
    #[schema(inline)]
    pub status: OkStatus,
    pub jobs: Vec<Job>,
}
