//! The service's own answers: health, readiness, GC and verification.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::OkStatus;
use crate::gc::{GcReport, VerifyReport};

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Health {
    #[schema(inline)]
    pub status: OkStatus,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ReadyStatus {
    Ready,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Ready {
    #[schema(inline)]
    pub status: ReadyStatus,
}

/// What a garbage collection did.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct GcAnswer {
    #[schema(inline)]
    pub status: OkStatus,
    #[serde(flatten)]
    pub report: GcReport,
}

/// What a verification found.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct VerifyAnswer {
    #[schema(inline)]
    pub status: OkStatus,
    #[serde(flatten)]
    pub report: VerifyReport,
}
