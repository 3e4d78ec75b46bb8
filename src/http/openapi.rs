//! The OpenAPI document of every route, assembled: the handlers carry
//! their own `#[utoipa::path]` and the answers are the wire types of
//! `crate::api` (the same types the handlers serialize), so the document
//! describes what is sent. This module lists the operations and adds what
//! is not per route (security, HEAD operations, optional parameters, raw
//! bodies). The page that shows it lives in `handlers::docs`.
//!
//! `tests/openapi.rs` fails when a route of the table in `mod.rs` is missing
//! from the document, and validates it.

use std::sync::OnceLock;

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{IntoParams, Modify, OpenApi};

use super::handlers::{
    builds, catalog, components, deps, docs, images, keys, original, service, workers,
};
use crate::{api, model};

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
`auth.anonymous_read` is off; a wrong, expired or revoked key is refused (401) even for reads. \
A key with a scope (`components`) may write only the components it names (else 403).\n\n\
Names (component, tag, architecture) are `[A-Za-z0-9._+-]`, without `..`; architectures \
are case-insensitive.",
        license(name = "MIT"),
    ),
    paths(
        catalog::catalog,
        catalog::catalog_index_html,
        service::healthz,
        service::readyz,
        service::metrics,
        service::gc,
        service::verify,
        docs::openapi_json,
        docs::docs,
        docs::docs_dir,
        docs::docs_index_html,
        docs::docs_bundle,
        docs::docs_css,
        original::get_component,
        original::put_component,
        original::post_component,
        original::get_image,
        original::post_image_original,
        images::list_images,
        images::post_image,
        images::get_image_rest,
        builds::post_build,
        builds::list_jobs,
        builds::get_job,
        builds::get_log,
        workers::cancel,
        workers::spec,
        workers::log,
        workers::failed,
        workers::result,
        workers::image,
        workers::claim,
        components::list,
        components::missing,
        components::versions,
        components::download,
        components::put,
        components::delete,
        components::info,
        components::rebuild,
        deps::resolve,
        deps::inputs,
        components::blob,
        keys::create_key,
        keys::list_keys,
        keys::revoke_key,
    ),
    components(schemas(
        api::ErrorBody,
        api::ComponentRecord,
        api::ComponentAnswer,
        api::MissingAnswer,
        api::JobAccepted,
        model::Job,
        api::ImageAnswer,
        api::ResolveAnswer,
        api::LockDocument,
    )),
    modifiers(&BearerAuth, &HeadOperations, &OptionalParameters, &RawContent),
    tags(
        (name = "components", description = "Component tarballs: upload, download, list, \
         and which of a dependency tree are not stored yet."),
        (name = "original-api", description = "The original API of today's build scripts, \
         kept drop-in compatible: fields from a JSON body (sent even on GET) or the query string."),
        (name = "builds", description = "Building a component from its git repository."),
        (name = "jobs", description = "Build jobs: state and live logs."),
        (name = "dependencies", description = "Dependency closures for build scripts: one call \
         for the whole closure, lock documents, inputs keys."),
        (name = "images", description = "Container images built from a Dockerfile."),
        (name = "keys", description = "API keys as data (admin): one per pipeline, with a role, \
         an expiry and a scope of components; revoked at once on every replica."),
        (name = "workers", description = "What `artifact-store worker` calls: a build handed to \
         Slurm, Kubernetes or a polling worker fetches its spec, posts its log and stores its \
         result with the job token minted for it."),
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
                         Create one with `POST /v1/keys` (`artifact-store key create NAME \
                         --role ROLE`), or for the config file with `artifact-store key new`.",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "job_token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A job token (`adbsjob_...`), minted when a build is handed to a worker: \
                         it may read, post that job's log and store that job's result, while \
                         the job runs.",
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use serde_json::Value;

    use super::*;

    fn doc() -> Value {
        serde_json::from_str(document()).unwrap()
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
}
