//! The HTTP face of the service: the route table, and thin handlers over
//! the domain. Read top to bottom, it is a one-way stack:
//!
//! - `handlers/`: one file per resource (`components`, `original` — the
//!   lab's original API in one place —, `builds`, `images`, `keys`,
//!   `service`, `docs`, `catalog`); a handler extracts, calls the domain,
//!   answers.
//! - below them, shared by the handlers: `jobs` (answers about jobs, build
//!   starts, build-on-miss), `respond` (links, rendered lookups, serving a
//!   component or blob), `files` (streaming a blob file with Range/ETag),
//!   `body` (request bodies: idle timeout, uploads, small JSON), `params`
//!   (the original API's fields), `caller` (identity headers, keys),
//!   `wording` (what serde and actix say about a bad request, in the API's
//!   words).
//! - at the bottom: `error` (the one error -> HTTP mapping) and `openapi`
//!   (the document assembled from the handlers' annotations and `crate::api`).
//!
//! Architecture invariant: actix-web is used only in this module; handlers
//! call domain operations (`Components`, `Builder`, `Images`), never the
//! store or the index; every error answer is `crate::api::ErrorBody`.

mod body;
mod caller;
pub mod error;
mod files;
mod handlers;
mod jobs;
pub mod openapi;
mod params;
mod respond;
mod wording;

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Instant;

use actix_web::dev::{Server, Service};
use actix_web::{web, App, HttpRequest, HttpServer};

use crate::auth::KeyRing;
use crate::build::Builder;
use crate::components::Components;
use crate::config::Config;
use crate::image::Images;
use error::ApiError;
use handlers::{
    builds, catalog, components as c, deps, docs, images, keys, original, service, workers,
};
use respond::RenderCache;

/// What every handler shares.
pub struct AppState {
    pub components: Components,
    pub builder: Builder,
    pub images: Images,
    pub keys: KeyRing,
    pub cfg: Arc<Config>,
    /// Rendered `/info` answers (the cache-hit check is the hottest request).
    info_cache: RenderCache<crate::model::ComponentKey>,
    /// Rendered image lookups (`GET /image`: "what do I pull?").
    image_cache: RenderCache<crate::model::ImageKey>,
}

impl AppState {
    pub fn new(
        components: Components,
        builder: Builder,
        images: Images,
        keys: KeyRing,
        cfg: Arc<Config>,
    ) -> Self {
        Self {
            components,
            builder,
            images,
            keys,
            cfg,
            info_cache: Default::default(),
            image_cache: Default::default(),
        }
    }
}

/// Runs blocking domain work off the async threads.
pub(crate) async fn blocking<T, E, F>(f: F) -> Result<T, ApiError>
where
    F: FnOnce() -> Result<T, E> + Send + 'static,
    T: Send + 'static,
    E: Send + 'static,
    ApiError: From<E>,
{
    Ok(tokio::task::spawn_blocking(f).await??)
}

/// The route table.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.app_data(error::json_config())
        .app_data(error::query_config())
        .app_data(error::path_config())
        // The hot read paths first: resources are matched in order; static
        // paths cost a string compare, patterns with parameters a regex match.
        .service(
            resource("/component")
                .route(web::get().to(original::get_component))
                .route(web::head().to(original::get_component))
                .route(web::put().to(original::put_component))
                .route(web::post().to(original::post_component)),
        )
        .service(
            resource("/image")
                .route(web::get().to(original::get_image))
                .route(web::post().to(images::post_image)),
        )
        .service(
            resource("/v1/components/{component}/{tag}/{arch}/info").route(web::get().to(c::info)),
        )
        .service(
            resource("/v1/components/{component}/{tag}/{arch}/rebuild")
                .route(web::post().to(c::rebuild)),
        )
        .service(
            resource("/v1/components/{component}/{tag}/{arch}")
                .route(web::get().to(c::download))
                .route(web::head().to(c::download))
                .route(web::put().to(c::put))
                .route(web::delete().to(c::delete)),
        )
        .service(
            resource("/v1/blobs/{blake3}")
                .route(web::get().to(c::blob))
                .route(web::head().to(c::blob)),
        )
        .service(
            resource("/v1/images/{component}/{branch}/{arch}")
                .route(web::get().to(images::get_image_rest)),
        )
        .service(resource("/").route(web::get().to(catalog::index)))
        .service(resource("/index.html").route(web::get().to(catalog::index)))
        .service(resource("/healthz").route(web::get().to(service::healthz)))
        .service(resource("/openapi.json").route(web::get().to(docs::openapi_json)))
        .service(resource("/docs").route(web::get().to(docs::docs)))
        .service(resource("/docs/").route(web::get().to(docs::docs_dir)))
        .service(resource("/docs/index.html").route(web::get().to(docs::docs_dir)))
        .service(resource("/docs/swagger-ui-bundle.js").route(web::get().to(docs::docs_bundle)))
        .service(resource("/docs/swagger-ui.css").route(web::get().to(docs::docs_css)))
        .service(resource("/readyz").route(web::get().to(service::readyz)))
        .service(resource("/metrics").route(web::get().to(service::metrics)))
        .service(resource("/v1/admin/gc").route(web::post().to(service::gc)))
        .service(resource("/v1/admin/verify").route(web::post().to(service::verify)))
        .service(
            resource("/v1/keys")
                .route(web::get().to(keys::list_keys))
                .route(web::post().to(keys::create_key)),
        )
        .service(resource("/v1/keys/{name}").route(web::delete().to(keys::revoke_key)))
        .service(
            resource("/v1/images")
                .route(web::get().to(images::list_images))
                .route(web::post().to(images::post_image)),
        )
        .service(resource("/v1/builds").route(web::post().to(builds::post_build)))
        .service(resource("/v1/resolve").route(web::post().to(deps::resolve)))
        .service(resource("/v1/inputs/{key}").route(web::get().to(deps::inputs)))
        .service(resource("/v1/jobs").route(web::get().to(builds::list_jobs)))
        .service(
            resource("/v1/jobs/{id}")
                .route(web::get().to(builds::get_job))
                .route(web::delete().to(workers::cancel)),
        )
        .service(
            resource("/v1/jobs/{id}/log")
                .route(web::get().to(builds::get_log))
                .route(web::post().to(workers::log)),
        )
        .service(resource("/v1/jobs/{id}/spec").route(web::get().to(workers::spec)))
        .service(resource("/v1/jobs/{id}/result").route(web::put().to(workers::result)))
        .service(resource("/v1/jobs/{id}/image").route(web::put().to(workers::image)))
        .service(resource("/v1/jobs/{id}/failed").route(web::post().to(workers::failed)))
        .service(resource("/v1/workers/claim").route(web::post().to(workers::claim)))
        .service(resource("/v1/components").route(web::get().to(c::list)))
        .service(resource("/v1/components/missing").route(web::post().to(c::missing)))
        .service(resource("/v1/components/{component}").route(web::get().to(c::versions)));
}

/// The route pattern a request was routed to, for metrics (reading it back
/// with `match_pattern()` would match the path against every route again).
struct RoutePattern(&'static str);

/// A resource whose unsupported methods answer 405 in JSON.
fn resource(path: &'static str) -> actix_web::Resource {
    web::resource(path)
        .app_data(RoutePattern(path))
        .default_service(web::to(|req: HttpRequest| async move {
            ApiError::new(
                actix_web::http::StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                format!("{} is not allowed on {}", req.method(), req.path()),
            )
        }))
}

async fn no_route(req: HttpRequest) -> ApiError {
    ApiError::not_found(format!("no route for {} {}", req.method(), req.path()))
}

/// Starts the server on an already bound listener.
pub fn start(state: AppState, listener: TcpListener) -> std::io::Result<Server> {
    let workers = match state.cfg.workers {
        0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
        n => n,
    };
    let log_requests = state.cfg.log_requests;
    let idle = std::time::Duration::from_secs(state.cfg.http.body_idle_secs.max(1));
    let min_rate = state.cfg.http.body_min_bytes_per_sec;
    let state = web::Data::new(state);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .configure(routes)
            .default_service(web::to(no_route))
            .wrap_fn(move |mut req, srv| {
                if body::has_body(req.headers()) {
                    use actix_web::HttpMessage;
                    let payload = req.take_payload();
                    req.set_payload(actix_web::dev::Payload::Stream {
                        payload: Box::pin(body::IdleBody::new(payload, idle, min_rate)),
                    });
                }
                let start = Instant::now();
                let method = req.method().clone();
                let logged =
                    log_requests.then(|| (req.path().to_owned(), caller::identity(req.request())));
                let fut = srv.call(req);
                async move {
                    let res = fut.await?;
                    let status = res.status();
                    let route = res
                        .request()
                        .app_data::<RoutePattern>()
                        .map_or("unmatched", |r| r.0);
                    let secs = start.elapsed().as_secs_f64();
                    let m = &crate::metrics::METRICS;
                    m.requests
                        .with_label_values(&[route, method.as_str(), status.as_str()])
                        .inc();
                    m.request_seconds.with_label_values(&[route]).observe(secs);
                    if status.is_success() && method != actix_web::http::Method::HEAD {
                        if let actix_web::body::BodySize::Sized(n) =
                            actix_web::body::MessageBody::size(res.response().body())
                        {
                            if res.response().headers().contains_key("etag") {
                                m.bytes_served.inc_by(n);
                            }
                        }
                    }
                    if let Some((path, who)) = logged {
                        tracing::info!(
                            target: "artifact_store::request",
                            %method,
                            path,
                            status = status.as_u16(),
                            ms = secs * 1000.0,
                            linux_user = who.linux_username.as_deref().unwrap_or("-"),
                            github_user = who.github_username.as_deref().unwrap_or("-"),
                            key = caller::key_name(res.request()).as_deref().unwrap_or("-"),
                        );
                    }
                    Ok(res)
                }
            })
    })
    .workers(workers)
    .listen(listener)?
    .run();
    Ok(server)
}
