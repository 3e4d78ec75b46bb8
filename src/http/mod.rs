//! The HTTP face of the service: the route table and thin handlers.
//!
//! Layout: `error` (the one error -> HTTP mapping), `caller` (identity
//! headers, API keys), `files` (streaming blob files), `upload` (streaming
//! bodies to temp files), `components` (REST), `legacy` (the original API),
//! `builds` (builds, jobs, build-on-miss).
//!
//! Architecture invariant: actix-web is used only in this module; handlers
//! extract, call the domain, and map the answer, nothing more.

mod admin;
mod builds;
mod caller;
mod components;
pub mod error;
mod files;
mod idle;
mod images;
mod legacy;
mod openapi;
mod ui;
mod upload;

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Instant;

use actix_web::dev::{Server, Service};
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use serde_json::json;

use crate::auth::KeyRing;
use crate::build::Builder;
use crate::components::{ComponentError, Components};
use crate::config::Config;
use crate::image::Images;
use error::ApiError;

/// What every handler shares.
pub struct AppState {
    pub components: Components,
    pub builder: Builder,
    pub images: Images,
    pub keys: KeyRing,
    pub cfg: Arc<Config>,
    /// Rendered `/info` answers (the cache-hit check is the hottest request).
    pub info_cache: RenderCache<crate::model::ComponentKey>,
    /// Rendered image lookups (`GET /image`: "what do I pull?").
    pub image_cache: RenderCache<crate::model::ImageKey>,
}

/// Rendered answers by key, each valid while the index holds the same
/// record bytes for that key and the base URL is the same: always fresh,
/// without invalidation. Bounded: cleared when full.
pub struct RenderCache<K> {
    map: std::sync::Mutex<std::collections::HashMap<K, CachedInfo>>,
}

impl<K> Default for RenderCache<K> {
    fn default() -> Self {
        Self {
            map: Default::default(),
        }
    }
}

struct CachedInfo {
    base: String,
    raw: Vec<u8>,
    body: bytes::Bytes,
}

const RENDER_CACHE_ENTRIES: usize = 10_000;

impl<K: std::hash::Hash + Eq> RenderCache<K> {
    fn get(&self, key: &K, base: &str, raw: &[u8]) -> Option<bytes::Bytes> {
        let map = self.map.lock().ok()?;
        let e = map.get(key)?;
        (e.base == base && e.raw == raw).then(|| e.body.clone())
    }

    fn put(&self, key: K, base: String, raw: &[u8], body: bytes::Bytes) {
        if let Ok(mut map) = self.map.lock() {
            if map.len() >= RENDER_CACHE_ENTRIES {
                map.clear();
            }
            map.insert(
                key,
                CachedInfo {
                    base,
                    raw: raw.to_vec(),
                    body,
                },
            );
        }
    }
}

/// Runs blocking domain work off the async threads.
pub(crate) async fn blocking<T, F>(f: F) -> Result<T, ApiError>
where
    F: FnOnce() -> Result<T, ComponentError> + Send + 'static,
    T: Send + 'static,
{
    Ok(tokio::task::spawn_blocking(f).await??)
}

/// The route table.
pub fn routes(cfg: &mut web::ServiceConfig) {
    use components as c;
    cfg.app_data(error::json_config())
        .app_data(error::query_config())
        .app_data(error::path_config())
        // The hot read paths first: resources are matched in order; static
        // paths cost a string compare, patterns with parameters a regex match.
        .service(
            resource("/component")
                .route(web::get().to(legacy::get_component))
                .route(web::head().to(legacy::get_component))
                .route(web::put().to(legacy::put_component))
                .route(web::post().to(builds::post_component)),
        )
        .service(
            resource("/image")
                .route(web::get().to(images::get_image))
                .route(web::post().to(images::post_image)),
        )
        .service(
            resource("/v1/components/{component}/{tag}/{arch}/info").route(web::get().to(c::info)),
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
        .service(resource("/").route(web::get().to(ui::index)))
        .service(resource("/index.html").route(web::get().to(ui::index)))
        .service(resource("/healthz").route(web::get().to(healthz)))
        .service(resource("/openapi.json").route(web::get().to(openapi::openapi_json)))
        .service(resource("/docs").route(web::get().to(openapi::docs)))
        .service(resource("/docs/swagger-ui-bundle.js").route(web::get().to(openapi::docs_bundle)))
        .service(resource("/docs/swagger-ui.css").route(web::get().to(openapi::docs_css)))
        .service(resource("/readyz").route(web::get().to(admin::readyz)))
        .service(resource("/metrics").route(web::get().to(admin::metrics)))
        .service(resource("/v1/admin/gc").route(web::post().to(admin::gc)))
        .service(resource("/v1/admin/verify").route(web::post().to(admin::verify)))
        .service(
            resource("/v1/images")
                .route(web::get().to(images::list_images))
                .route(web::post().to(images::post_image)),
        )
        .service(resource("/v1/builds").route(web::post().to(builds::post_build)))
        .service(resource("/v1/jobs").route(web::get().to(builds::list_jobs)))
        .service(resource("/v1/jobs/{id}").route(web::get().to(builds::get_job)))
        .service(resource("/v1/jobs/{id}/log").route(web::get().to(builds::get_log)))
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

#[utoipa::path(
    get,
    path = "/healthz",
    tag = "service",
    summary = "Liveness",
    description = "The process answers.",
    security(()),
    responses((status = 200, description = "Alive", body = openapi::schema::Health)),
)]
async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

async fn no_route(req: HttpRequest) -> ApiError {
    ApiError::not_found(format!("no route for {} {}", req.method(), req.path()))
}

impl actix_web::Responder for ApiError {
    type Body = actix_web::body::BoxBody;
    fn respond_to(self, _: &HttpRequest) -> HttpResponse {
        actix_web::ResponseError::error_response(&self)
    }
}

/// Starts the server on an already bound listener.
pub fn start(state: AppState, listener: TcpListener) -> std::io::Result<Server> {
    let workers = match state.cfg.workers {
        0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
        n => n,
    };
    let log_requests = state.cfg.log_requests;
    let idle = std::time::Duration::from_secs(state.cfg.http.body_idle_secs.max(1));
    let state = web::Data::new(state);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .configure(routes)
            .default_service(web::to(no_route))
            .wrap_fn(move |mut req, srv| {
                if idle::has_body(req.headers()) {
                    use actix_web::HttpMessage;
                    let body = req.take_payload();
                    req.set_payload(actix_web::dev::Payload::Stream {
                        payload: Box::pin(idle::IdleBody::new(body, idle)),
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
