//! The OpenAPI document of every route (`GET /openapi.json`) and a Swagger
//! UI page to read it (`GET /docs`), served from assets embedded in the
//! binary: the page works with no internet access.
//!
//! The handlers carry their own `#[utoipa::path]`; this module lists them,
//! holds the schemas of the JSON answers (documentation types: the answers
//! themselves are built with `serde_json::json!`, and the tests below check
//! that both agree), and adds what is not per route (security, HEAD).
//!
//! `tests/openapi.rs` fails when a route of the table in `mod.rs` is missing
//! from the document.

use std::sync::OnceLock;

use actix_web::http::header;
use actix_web::HttpResponse;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{IntoParams, Modify, OpenApi};

use super::{admin, builds, components, images, legacy};

/// Swagger UI (swagger-ui-dist 5, Apache-2.0), vendored from the npm registry.
static SWAGGER_UI_BUNDLE: &[u8] = include_bytes!("assets/swagger-ui-bundle.js");
static SWAGGER_UI_CSS: &[u8] = include_bytes!("assets/swagger-ui.css");
/// The page; `__ASSET_VERSION__` is replaced by a hash of the two assets,
/// so that their long cache lifetime never serves a stale copy.
const DOCS_HTML: &str = include_str!("assets/docs.html");

const ASSET_CACHE: &str = "public, max-age=31536000, immutable";

/// The page may load nothing from elsewhere and talk only to this service.
const DOCS_CSP: &str = "default-src 'none'; script-src 'self' 'unsafe-inline'; \
                        style-src 'self' 'unsafe-inline'; img-src 'self' data:; \
                        connect-src 'self'; base-uri 'none'; form-action 'none'; \
                        frame-ancestors 'none'";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "artifact-store",
        version = env!("CARGO_PKG_VERSION"),
        description = "Artifact storage of a build system: content-addressed component \
tarballs, builds from git, container images.\n\n\
Every answer is JSON except downloads. Errors are `{\"status\": \"error\", \"errorMessage\": \
\"...\", \"code\": \"...\"}` (schema `ErrorBody`) with the matching HTTP status; any route may \
also answer 500 (`code` `internal`) and 405 (`method_not_allowed`) for a method it does not \
have.\n\n\
API keys are sent as `Authorization: Bearer <key>`. Reads are anonymous unless \
`auth.anonymous_read` is off; a wrong key is refused (401) even for reads.\n\n\
Names (component, tag, architecture) are `[A-Za-z0-9._+-]`, without `..`; architectures \
are case-insensitive.",
        license(name = "MIT"),
    ),
    paths(
        catalog,
        catalog_index_html,
        super::healthz,
        admin::readyz,
        admin::metrics,
        admin::gc,
        admin::verify,
        openapi_json,
        docs,
        docs_bundle,
        docs_css,
        legacy::get_component,
        legacy::put_component,
        builds::post_component,
        images::get_image,
        images::post_image_original,
        images::list_images,
        images::post_image,
        images::get_image_rest,
        builds::post_build,
        builds::list_jobs,
        builds::get_job,
        builds::get_log,
        components::list,
        components::missing,
        components::versions,
        components::download,
        components::put,
        components::delete,
        components::info,
        components::blob,
    ),
    components(schemas(
        schema::ErrorBody,
        schema::ComponentRecord,
        schema::ComponentAnswer,
        schema::MissingAnswer,
        schema::JobAccepted,
        schema::Job,
        schema::ImageAnswer,
    )),
    modifiers(&BearerAuth, &HeadOperations, &OptionalParameters, &RawContent),
    tags(
        (name = "components", description = "Component tarballs: upload, download, list, \
         and which of a dependency tree are not stored yet."),
        (name = "original-api", description = "The original API of today's build scripts, \
         kept drop-in compatible: fields from a JSON body (sent even on GET) or the query string."),
        (name = "builds", description = "Building a component from its git repository."),
        (name = "jobs", description = "Build jobs: state and live logs."),
        (name = "images", description = "Container images built from a Dockerfile."),
        (name = "service", description = "Health, and this documentation."),
    )
)]
pub struct ApiDoc;

/// The `bearer` security scheme that the operations refer to.
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        let components = api.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An API key: `Authorization: Bearer <key>`. Roles: read < write < admin. \
                         Create one with `artifact-store key new --name NAME --role ROLE`.",
                    ))
                    .build(),
            ),
        );
    }
}

/// Handlers routed for both GET and HEAD are documented once with
/// `method(get, head)`; this gives the HEAD operation its own id (ids must
/// be unique) and drops the bodies from its responses (HEAD has none).
struct HeadOperations;

impl Modify for HeadOperations {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        for item in api.paths.paths.values_mut() {
            let Some(head) = item.head.as_mut() else {
                continue;
            };
            if let Some(id) = head.operation_id.as_mut() {
                if !id.starts_with("head_") {
                    *id = format!("head_{id}");
                }
            }
            head.request_body = None;
            head.summary = head.summary.take().map(|s| format!("{s} (headers only)"));
            for resp in head.responses.responses.values_mut() {
                if let utoipa::openapi::RefOr::T(r) = resp {
                    r.content.clear();
                }
            }
        }
    }
}

/// A parameter that is not required is absent when not sent, never null:
/// `Option<T>` parameters are documented as `T` (not `T | null`).
struct OptionalParameters;

impl Modify for OptionalParameters {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::schema::{Schema, SchemaType, Type};
        use utoipa::openapi::RefOr;
        for item in api.paths.paths.values_mut() {
            let ops = [
                &mut item.get,
                &mut item.head,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ];
            for op in ops.into_iter().flatten() {
                for param in op.parameters.iter_mut().flatten() {
                    let RefOr::T(param) = param else { continue };
                    let Some(RefOr::T(Schema::Object(obj))) = param.schema.as_mut() else {
                        continue;
                    };
                    if let SchemaType::Array(types) = &mut obj.schema_type {
                        types.retain(|t| *t != Type::Null);
                        if let [only] = types.as_slice() {
                            obj.schema_type = SchemaType::Type(only.clone());
                        }
                    }
                }
            }
        }
    }
}

/// Bodies that are not JSON (tarballs, blobs, text) are declared by their
/// media type alone in the handlers; this gives them the schema OpenAPI 3.1
/// uses for raw content (a string of that media type), so that Swagger UI
/// offers a file upload for them.
struct RawContent;

impl Modify for RawContent {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        use utoipa::openapi::{Content, RefOr};
        let fill = |media: &str, content: &mut RefOr<Content>| {
            let RefOr::T(c) = content else { return };
            if c.schema.is_none() {
                let mut o = ObjectBuilder::new().schema_type(Type::String);
                if !media.starts_with("text/") {
                    o = o.content_media_type(media);
                }
                c.schema = Some(o.into());
            }
        };
        for item in api.paths.paths.values_mut() {
            let ops = [
                &mut item.get,
                &mut item.head,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ];
            for op in ops.into_iter().flatten() {
                if let Some(RefOr::T(body)) = op.request_body.as_mut() {
                    for (media, c) in body.content.iter_mut() {
                        fill(media, c);
                    }
                }
                for resp in op.responses.responses.values_mut() {
                    if let RefOr::T(r) = resp {
                        for (media, c) in r.content.iter_mut() {
                            fill(media, c);
                        }
                    }
                }
            }
        }
    }
}

/// The document as served.
pub fn document() -> &'static str {
    static DOC: OnceLock<String> = OnceLock::new();
    DOC.get_or_init(|| {
        ApiDoc::openapi()
            .to_pretty_json()
            .expect("the OpenAPI document serializes")
    })
}

/// The OpenAPI document
///
/// This document (OpenAPI 3.1): every route of the service.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "service",
    security(()),
    responses((status = 200, description = "The OpenAPI document", content_type = "application/json", body = Object)),
)]
pub async fn openapi_json() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .body(document())
}

fn docs_page() -> &'static str {
    static PAGE: OnceLock<String> = OnceLock::new();
    PAGE.get_or_init(|| {
        let mut h = blake3::Hasher::new();
        h.update(SWAGGER_UI_BUNDLE);
        h.update(SWAGGER_UI_CSS);
        let version = h.finalize().to_hex();
        DOCS_HTML.replace("__ASSET_VERSION__", &version[..16])
    })
}

/// The API documentation page
///
/// Swagger UI over `/openapi.json`. Its assets are served by this service:
/// the page needs no internet access.
#[utoipa::path(
    get,
    path = "/docs",
    tag = "service",
    security(()),
    responses((status = 200, description = "The HTML page", content_type = "text/html")),
)]
pub async fn docs() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header((header::CONTENT_SECURITY_POLICY, DOCS_CSP))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .body(docs_page())
}

/// Swagger UI's script
///
/// Used by `/docs`. Cached for a year: the page names it with a version.
#[utoipa::path(
    get,
    path = "/docs/swagger-ui-bundle.js",
    tag = "service",
    security(()),
    responses((status = 200, description = "Swagger UI (swagger-ui-dist 5, Apache-2.0)", content_type = "text/javascript")),
)]
pub async fn docs_bundle() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/javascript; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, ASSET_CACHE))
        .body(SWAGGER_UI_BUNDLE)
}

/// Swagger UI's style sheet
///
/// Used by `/docs`. Cached for a year: the page names it with a version.
#[utoipa::path(
    get,
    path = "/docs/swagger-ui.css",
    tag = "service",
    security(()),
    responses((status = 200, description = "Swagger UI's CSS (swagger-ui-dist 5, Apache-2.0)", content_type = "text/css")),
)]
pub async fn docs_css() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/css; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, ASSET_CACHE))
        .body(SWAGGER_UI_CSS)
}

// `/` and `/index.html` are served by `ui::index`; documented here, as
// two operations (one per path), by these two items that nothing calls.

/// The web catalog
///
/// A read-only page (HTML, CSS and JS, no external resources) that lists
/// components, images and recent jobs through the JSON API.
#[utoipa::path(
    get,
    path = "/",
    tag = "service",
    security(()),
    responses((status = 200, description = "The HTML page", content_type = "text/html")),
)]
#[allow(dead_code)]
fn catalog() {}

/// The web catalog (as `/index.html`)
///
/// The same page as `/`.
#[utoipa::path(
    get,
    path = "/index.html",
    tag = "service",
    security(()),
    responses((status = 200, description = "The HTML page", content_type = "text/html")),
)]
#[allow(dead_code)]
fn catalog_index_html() {}

/// The identity headers that build scripts send: recorded with uploads and
/// builds, and logged with every request. Informational only: authorisation
/// is by API key.
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)]
pub struct IdentityHeaders {
    /// The caller's Linux user name. nginx-based ingresses drop headers with
    /// underscores unless `underscores_in_headers on;`: use
    /// `X-adbs-linux-user` behind them.
    linux_username: Option<String>,
    /// The caller's GitHub user name (see `linux_username` about underscores).
    github_username: Option<String>,
    /// Same as `linux_username`.
    #[param(rename = "X-adbs-linux-user")]
    x_adbs_linux_user: Option<String>,
    /// Same as `github_username`.
    #[param(rename = "X-adbs-github-user")]
    x_adbs_github_user: Option<String>,
}

/// The schemas of the JSON answers and of the requests that have no Rust
/// type of their own (the original API's fields are read by name).
#[allow(dead_code)]
pub mod schema {
    use chrono::{DateTime, Utc};
    use serde_json::Value;
    use utoipa::ToSchema;

    #[derive(ToSchema)]
    #[serde(rename_all = "lowercase")]
    pub enum ErrorStatus {
        Error,
    }

    #[derive(ToSchema)]
    #[serde(rename_all = "lowercase")]
    pub enum OkStatus {
        Ok,
    }

    /// The answer of every error.
    #[derive(ToSchema)]
    #[schema(example = json!({"status": "error", "errorMessage": "component asyn tag R4.39 does not exist for architecture rocky9", "code": "not_found"}))]
    pub struct ErrorBody {
        #[schema(inline)]
        pub status: ErrorStatus,
        /// What went wrong, for people.
        #[serde(rename = "errorMessage")]
        pub error_message: String,
        /// What went wrong, for programs: `bad_request`, `invalid_name`,
        /// `bad_archive`, `checksum_mismatch`, `unauthorized`, `forbidden`,
        /// `not_found`, `blob_not_found`, `method_not_allowed`, `conflict`,
        /// `too_large`, `range_not_satisfiable`, `unavailable`, `internal`.
        pub code: String,
    }

    /// A failed or interrupted build: the error answer plus the job.
    #[derive(ToSchema)]
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

    #[derive(ToSchema)]
    pub struct Health {
        #[schema(inline)]
        pub status: OkStatus,
    }

    #[derive(ToSchema)]
    #[serde(rename_all = "lowercase")]
    pub enum ReadyStatus {
        Ready,
    }

    #[derive(ToSchema)]
    pub struct Ready {
        #[schema(inline)]
        pub status: ReadyStatus,
    }

    /// What a garbage collection did.
    #[derive(ToSchema)]
    pub struct GcAnswer {
        #[schema(inline)]
        pub status: OkStatus,
        /// Index entries dropped by the retention rules (`component/tag/arch`).
        pub retention_dropped: Vec<String>,
        pub blobs_scanned: usize,
        pub blobs_referenced: usize,
        /// Unreferenced blobs kept because they are younger than the grace period.
        pub blobs_young: usize,
        /// The blobs removed (blake3).
        pub blobs_removed: Vec<String>,
        pub bytes_freed: u64,
    }

    /// What a verification found.
    #[derive(ToSchema)]
    pub struct VerifyAnswer {
        #[schema(inline)]
        pub status: OkStatus,
        pub blobs_checked: usize,
        /// Blobs whose content did not match their name, moved to `quarantine/`.
        pub corrupt: Vec<String>,
        /// Index entries whose blob is missing (or was quarantined).
        pub missing: Vec<String>,
    }

    /// Who asked (the identity headers). Informational only.
    #[derive(ToSchema)]
    pub struct Identity {
        #[serde(skip_serializing_if = "Option::is_none")]
        pub linux_username: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub github_username: Option<String>,
    }

    /// Where a built component came from.
    #[derive(ToSchema)]
    pub struct Source {
        /// The git repository.
        pub url: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub commit: Option<String>,
    }

    /// A dependency as it was resolved for a build, pinned to its blob.
    #[derive(ToSchema)]
    pub struct Dependency {
        pub component: String,
        pub tag: String,
        pub arch: String,
        pub blake3: String,
    }

    /// (component, tag, architecture): one stored component build.
    #[derive(ToSchema)]
    pub struct ComponentKey {
        pub component: String,
        pub tag: String,
        /// Lower case.
        pub arch: String,
    }

    /// What the index keeps for a (component, tag, architecture).
    #[derive(ToSchema)]
    pub struct StoredRecord {
        pub component: String,
        pub tag: String,
        pub arch: String,
        /// blake3 (hex) of the canonical tar.zst blob.
        #[schema(pattern = "^[0-9a-f]{64}$")]
        pub blake3: String,
        /// Size in bytes of the canonical tar.zst blob.
        pub size: u64,
        pub created: DateTime<Utc>,
        pub uploaded_by: Identity,
        /// Set for components built by the service.
        #[serde(skip_serializing_if = "Option::is_none")]
        pub source: Option<Source>,
        pub dependencies: Vec<Dependency>,
    }

    /// A component record as answered, with its links.
    #[derive(ToSchema)]
    pub struct ComponentRecord {
        #[serde(flatten)]
        pub record: StoredRecord,
        /// `/v1/components/{component}/{tag}/{arch}`
        pub path: String,
        /// The download (`public_url`, or this request's host, plus `path`).
        pub download_url: String,
        /// The blob by content: never changes.
        pub blob_url: String,
        /// The record.
        pub info_url: String,
    }

    #[derive(ToSchema)]
    #[serde(rename_all = "lowercase")]
    pub enum ComponentStatus {
        Found,
        Created,
        Unchanged,
    }

    /// One component: `found` (a lookup), `created` (201) or `unchanged` (200: the same content was already stored).
    #[derive(ToSchema)]
    pub struct ComponentAnswer {
        #[schema(inline)]
        pub status: ComponentStatus,
        pub component: ComponentRecord,
    }

    #[derive(ToSchema)]
    #[serde(rename_all = "lowercase")]
    pub enum DeletedStatus {
        Deleted,
    }

    /// The index entry that was dropped (its blob stays until garbage collection).
    #[derive(ToSchema)]
    pub struct DeletedAnswer {
        #[schema(inline)]
        pub status: DeletedStatus,
        pub component: StoredRecord,
    }

    /// A page of components, ordered by component/tag/arch.
    #[derive(ToSchema)]
    pub struct ComponentList {
        #[schema(inline)]
        pub status: OkStatus,
        pub components: Vec<ComponentRecord>,
        /// When the page is full: pass it as `after` for the next page.
        pub next: Option<String>,
    }

    /// Every tag and architecture of one component.
    #[derive(ToSchema)]
    pub struct ComponentVersions {
        #[schema(inline)]
        pub status: OkStatus,
        pub component: String,
        pub versions: Vec<ComponentRecord>,
    }

    /// Which of the asked components are not stored.
    #[derive(ToSchema)]
    pub struct MissingAnswer {
        #[schema(inline)]
        pub status: OkStatus,
        /// How many were asked about.
        pub checked: usize,
        pub missing: Vec<ComponentKey>,
    }

    /// The original API's component fields (JSON body, or the query string, which wins).
    #[derive(ToSchema)]
    pub struct LegacyComponentRequest {
        pub component: String,
        pub tag: String,
        /// Absent or `"null"`: the configured `default_arch`.
        pub architecture: Option<String>,
        /// Alias of `architecture`.
        pub arch: Option<String>,
        /// `tar.gz` (default) or `tar.zst`.
        pub format: Option<String>,
        /// `info`: answer the record as JSON instead of the tarball.
        pub view: Option<String>,
    }

    /// Publishes a tarball from a path the service also sees.
    #[derive(ToSchema)]
    pub struct LegacyPutRequest {
        pub component: String,
        pub tag: String,
        /// A tar.gz, tar.zst or tar under one of `compat.import_roots`.
        pub results_tarball: String,
        /// Absent or `"null"`: the configured `default_arch`.
        pub architecture: Option<String>,
        /// Alias of `architecture`.
        pub arch: Option<String>,
    }

    /// Builds a component from git (the original API).
    #[derive(ToSchema)]
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

    /// Looks up an image (the original API).
    #[derive(ToSchema)]
    pub struct LegacyImageRequest {
        pub component: String,
        pub branch: Option<String>,
        /// Absent or `"null"`: the configured `default_arch`.
        pub architecture: Option<String>,
        /// Alias of `architecture`.
        pub arch: Option<String>,
    }

    #[derive(ToSchema)]
    #[serde(rename_all = "lowercase")]
    pub enum JobState {
        Queued,
        Running,
        Success,
        Failed,
        Interrupted,
    }

    /// One step of a job (`clone`, `resolve`, `build`, `pack`, `store`, ...).
    #[derive(ToSchema)]
    pub struct Step {
        pub name: String,
        pub state: JobState,
        pub started: DateTime<Utc>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub finished: Option<DateTime<Utc>>,
    }

    /// A build job.
    #[derive(ToSchema)]
    pub struct Job {
        pub id: String,
        /// `component` or `image`.
        pub kind: String,
        pub state: JobState,
        /// What the job builds (the request).
        pub target: Value,
        pub requested_by: Identity,
        pub created: DateTime<Utc>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub started: Option<DateTime<Utc>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub finished: Option<DateTime<Utc>>,
        pub steps: Vec<Step>,
        /// On failure: which step failed and why.
        #[serde(skip_serializing_if = "Option::is_none")]
        pub error: Option<String>,
        /// On success: what was produced.
        #[serde(skip_serializing_if = "Option::is_none")]
        pub result: Option<Value>,
    }

    /// Where to follow a job.
    #[derive(ToSchema)]
    pub struct JobLinks {
        /// `/v1/jobs/{id}`
        pub job: String,
        /// `/v1/jobs/{id}/log`
        pub log: String,
        /// `/v1/jobs/{id}/log?follow=true`: streams the log until the job ends.
        pub follow: String,
    }

    #[derive(ToSchema)]
    #[serde(rename_all = "lowercase")]
    pub enum QueuedStatus {
        Queued,
    }

    /// 202: the build was queued (or joined: the same build was already in
    /// flight) and has not ended yet.
    #[derive(ToSchema)]
    pub struct JobAccepted {
        #[schema(inline)]
        pub status: QueuedStatus,
        /// The job's id.
        pub job: String,
        /// True when an identical build was already in flight.
        pub joined: bool,
        pub links: JobLinks,
    }

    #[derive(ToSchema)]
    #[serde(rename_all = "lowercase")]
    pub enum SuccessStatus {
        Success,
    }

    /// A component build that succeeded, or was not needed (`cached`).
    #[derive(ToSchema)]
    pub struct BuildAnswer {
        #[schema(inline)]
        pub status: SuccessStatus,
        /// True when the component was already stored: no job ran.
        #[serde(skip_serializing_if = "Option::is_none")]
        pub cached: Option<bool>,
        /// The job's id (not when `cached`).
        #[serde(skip_serializing_if = "Option::is_none")]
        pub job: Option<String>,
        pub component: Option<ComponentRecord>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub links: Option<JobLinks>,
    }

    /// One job.
    #[derive(ToSchema)]
    pub struct JobAnswer {
        #[schema(inline)]
        pub status: OkStatus,
        pub job: Job,
        /// From start to end (or now); null before it starts.
        pub duration_secs: Option<f64>,
        pub links: JobLinks,
    }

    /// The newest jobs first.
    #[derive(ToSchema)]
    pub struct JobList {
        #[schema(inline)]
        pub status: OkStatus,
        pub jobs: Vec<Job>,
    }

    #[derive(ToSchema)]
    #[serde(rename_all = "lowercase")]
    pub enum ImageLocation {
        /// Pushed to the configured registry.
        Registry,
        /// Only in the service's local podman storage (no registry is configured).
        Local,
    }

    /// A built image.
    #[derive(ToSchema)]
    pub struct ImageDescription {
        /// `<registry>/<repository>:<arch>`: the moving tag.
        #[serde(rename = "imageName")]
        pub image_name: String,
        /// `<registry>/<repository>:<arch>-<key12>`: the tag that never moves.
        #[serde(rename = "immutableName")]
        pub immutable_name: String,
        /// Manifest digest in the registry, or the local image id.
        pub digest: String,
        /// `podman pull <repository>@<digest>` (registry images only).
        #[serde(rename = "pullCommand")]
        pub pull_command: Option<String>,
        #[schema(inline)]
        pub location: ImageLocation,
        /// Set for local images.
        pub note: Option<String>,
        pub component: String,
        pub branch: Option<String>,
        pub arch: String,
        /// blake3 of the Dockerfile plus the canonical context.
        pub key: String,
        pub size: u64,
        pub created: DateTime<Utc>,
        pub built_by: Identity,
    }

    #[derive(ToSchema)]
    #[serde(rename_all = "lowercase")]
    pub enum ImageStatus {
        Found,
        Success,
    }

    /// An image: `found` (a lookup) or `success` (a build that ended, or `cached`).
    #[derive(ToSchema)]
    pub struct ImageAnswer {
        #[schema(inline)]
        pub status: ImageStatus,
        /// True when an identical image was already built: no job ran.
        #[serde(skip_serializing_if = "Option::is_none")]
        pub cached: Option<bool>,
        /// The job's id, when a build ran.
        #[serde(skip_serializing_if = "Option::is_none")]
        pub job: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub links: Option<JobLinks>,
        #[serde(flatten)]
        pub image: ImageDescription,
    }

    /// A page of images.
    #[derive(ToSchema)]
    pub struct ImageList {
        #[schema(inline)]
        pub status: OkStatus,
        pub images: Vec<ImageDescription>,
    }

    /// An image build with the Dockerfile uploaded.
    #[derive(ToSchema)]
    pub struct ImageBuildForm {
        /// The Dockerfile.
        #[schema(value_type = String, content_media_type = "application/octet-stream")]
        pub dockerfile: Vec<u8>,
        /// The build context: a tar, tar.gz or tar.zst (unpacked safely).
        #[schema(value_type = Option<String>, content_media_type = "application/octet-stream")]
        pub context: Option<Vec<u8>>,
        pub component: String,
        pub branch: String,
        /// Absent or `"null"`: the configured `default_arch`.
        pub architecture: Option<String>,
        /// Alias of `architecture`.
        pub arch: Option<String>,
        /// `true` or `1`: build without podman's layer cache.
        pub no_cache: Option<String>,
    }

    /// An image build from a Dockerfile in the configured `image.dockerfiles_dir` (the original API).
    #[derive(ToSchema)]
    pub struct ImageBuildJson {
        /// The file name in `image.dockerfiles_dir`.
        pub dockerfile: String,
        /// Default: the `dockerfile` name.
        pub component: Option<String>,
        pub branch: Option<String>,
        /// Absent or `"null"`: the configured `default_arch`.
        pub architecture: Option<String>,
        /// Alias of `architecture`.
        pub arch: Option<String>,
        /// `true` or `1`: build without podman's layer cache.
        pub no_cache: Option<String>,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use chrono::Utc;
    use serde_json::{json, Value};

    use super::*;
    use crate::model::{Identity, ImageRecord, Record, ResolvedDependency, Source};

    fn doc() -> Value {
        serde_json::from_str(document()).unwrap()
    }

    /// The property names of a schema, and the required ones, following
    /// `$ref` and `allOf`.
    fn props(doc: &Value, schema: &Value) -> (BTreeSet<String>, BTreeSet<String>) {
        if let Some(r) = schema["$ref"].as_str() {
            let name = r.trim_start_matches("#/components/schemas/");
            return props(doc, &doc["components"]["schemas"][name]);
        }
        let mut all = BTreeSet::new();
        let mut req = BTreeSet::new();
        if let Some(parts) = schema["allOf"].as_array() {
            for p in parts {
                let (a, r) = props(doc, p);
                all.extend(a);
                req.extend(r);
            }
        }
        if let Some(m) = schema["properties"].as_object() {
            all.extend(m.keys().cloned());
        }
        if let Some(r) = schema["required"].as_array() {
            req.extend(r.iter().filter_map(|v| v.as_str().map(str::to_owned)));
        }
        (all, req)
    }

    /// `answer`'s keys are all documented, and every required property is there.
    fn agrees(name: &str, answer: &Value) {
        let d = doc();
        let (all, required) = props(&d, &json!({"$ref": format!("#/components/schemas/{name}")}));
        assert!(!all.is_empty(), "no schema {name}");
        let keys: BTreeSet<String> = answer.as_object().unwrap().keys().cloned().collect();
        let undocumented: Vec<_> = keys.difference(&all).collect();
        assert!(
            undocumented.is_empty(),
            "{name}: undocumented {undocumented:?} in {answer}"
        );
        let absent: Vec<_> = required.difference(&keys).collect();
        assert!(
            absent.is_empty(),
            "{name}: required {absent:?} absent from {answer}"
        );
    }

    fn record() -> Record {
        Record {
            component: "asyn".into(),
            tag: "R4.39".into(),
            arch: "rocky9".into(),
            blake3: "0".repeat(64),
            size: 1,
            created: Utc::now(),
            uploaded_by: Identity {
                linux_username: Some("jdoe".into()),
                github_username: None,
            },
            source: Some(Source {
                url: "https://git.example.org/asyn.git".into(),
                commit: Some("abc".into()),
            }),
            dependencies: vec![ResolvedDependency {
                component: "epics-base".into(),
                tag: "R7.0.8".into(),
                arch: "rocky9".into(),
                blake3: "1".repeat(64),
            }],
        }
    }

    #[test]
    fn schemas_agree_with_the_answers() {
        let rec = components::record_json(&record(), "http://h");
        agrees("ComponentRecord", &rec);
        agrees("StoredRecord", &serde_json::to_value(record()).unwrap());
        agrees("Identity", &rec["uploaded_by"]);
        agrees("Source", &rec["source"]);
        agrees("Dependency", &rec["dependencies"][0]);

        let img = ImageRecord {
            component: "ioc".into(),
            branch: Some("main".into()),
            arch: "rocky9".into(),
            image: "r/ioc:rocky9".into(),
            immutable: "r/ioc:rocky9-0123456789ab".into(),
            digest: "sha256:00".into(),
            key: "2".repeat(64),
            size: 1,
            created: Utc::now(),
            built_by: Identity::default(),
            location: "registry".into(),
        };
        let mut v = crate::image::describe(&img);
        agrees("ImageDescription", &v);
        v["status"] = json!("found");
        agrees("ImageAnswer", &v);

        let job = crate::jobs::Job {
            id: "j1".into(),
            kind: "component".into(),
            state: crate::jobs::JobState::Failed,
            target: json!({}),
            requested_by: Identity::default(),
            created: Utc::now(),
            started: Some(Utc::now()),
            finished: Some(Utc::now()),
            steps: vec![crate::jobs::Step {
                name: "clone".into(),
                state: crate::jobs::JobState::Failed,
                started: Utc::now(),
                finished: Some(Utc::now()),
            }],
            error: Some("no".into()),
            result: Some(json!({})),
        };
        let j = serde_json::to_value(&job).unwrap();
        agrees("Job", &j);
        agrees("Step", &j["steps"][0]);

        let mut gc = serde_json::to_value(crate::gc::GcReport::default()).unwrap();
        gc["status"] = json!("ok");
        agrees("GcAnswer", &gc);
        let mut ver = serde_json::to_value(crate::gc::VerifyReport::default()).unwrap();
        ver["status"] = json!("ok");
        agrees("VerifyAnswer", &ver);
    }

    #[actix_web::test]
    async fn the_error_schema_is_the_error_answer() {
        let resp = actix_web::ResponseError::error_response(
            &super::super::error::ApiError::not_found("x"),
        );
        let body = actix_web::body::to_bytes(resp.into_body()).await.unwrap();
        agrees("ErrorBody", &serde_json::from_slice(&body).unwrap());
    }

    #[test]
    fn parameters_are_never_null() {
        let d = doc();
        for (path, item) in d["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                for p in op["parameters"].as_array().into_iter().flatten() {
                    assert!(
                        p["schema"]["type"].is_string(),
                        "{method} {path} {}: {}",
                        p["name"],
                        p["schema"]
                    );
                }
            }
        }
    }

    #[test]
    fn operation_ids_are_unique_and_head_has_no_body() {
        let d = doc();
        let mut ids = BTreeSet::new();
        for (path, item) in d["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                let id = op["operationId"].as_str().unwrap().to_owned();
                assert!(ids.insert(id.clone()), "{method} {path}: duplicate id {id}");
                if method == "head" {
                    assert!(op.get("requestBody").is_none(), "HEAD {path}");
                    for (code, r) in op["responses"].as_object().unwrap() {
                        assert!(r.get("content").is_none(), "HEAD {path} {code}");
                    }
                }
            }
        }
    }

    #[test]
    fn the_docs_page_names_its_assets_with_their_version() {
        let page = docs_page();
        assert!(!page.contains("__ASSET_VERSION__"));
        assert!(page.contains("docs/swagger-ui-bundle.js?v="));
        assert!(page.contains("docs/swagger-ui.css?v="));
        assert!(!page.contains("http://") && !page.contains("https://"));
    }
}
