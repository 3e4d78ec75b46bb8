//! The original API's requests: fields from a JSON body (sent even on GET)
//! or the query string, which wins. The handlers read them into these types.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The original API's component fields (`GET /component`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct LegacyComponentRequest {
    pub component: String,
    pub tag: String,
    /// Absent or `"null"`: the configured `default_arch`.
    pub architecture: Option<String>,
    /// Alias of `architecture`.
    pub arch: Option<String>,
    /// `tar.gz` (default) or `tar.zst`.
    pub format: Option<String>,
    /// `info`: answer the record as JSON instead of the tarball; `closure`:
    /// its dependency closure (as `POST /v1/resolve`).
    pub view: Option<String>,
}

/// Publishes a tarball from a path the service also sees (`PUT /component`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct LegacyPutRequest {
    pub component: String,
    pub tag: String,
    /// A tar.gz, tar.zst or tar under one of `compat.import_roots`.
    pub results_tarball: String,
    /// Absent or `"null"`: the configured `default_arch`.
    pub architecture: Option<String>,
    /// Alias of `architecture`.
    pub arch: Option<String>,
    /// `true`: store a tarball whose only top directory is named like
    /// another tag under `<tag>/` anyway (refused without it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wrap: Option<String>,
}

/// Builds a component from git (`POST /component`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct LegacyBuildRequest {
    pub component: String,
    pub tag: String,
    /// The git repository; may be left out when the service knows the component's repository.
    pub url: Option<String>,
    /// Absent or `"null"`: the configured `default_arch`.
    pub architecture: Option<String>,
    /// Alias of `architecture`.
    pub arch: Option<String>,
    /// `true` or `1`: wait for the build to end.
    pub wait: Option<String>,
}

/// Looks up an image (`GET /image`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct LegacyImageRequest {
    pub component: String,
    pub branch: Option<String>,
    /// Absent or `"null"`: the configured `default_arch`.
    pub architecture: Option<String>,
    /// Alias of `architecture`.
    pub arch: Option<String>,
}
