//! The API documentation: `/openapi.json` and a Swagger UI page at
//! `/docs`, served from assets embedded in the binary, so the page works
//! with no internet access.

use std::sync::OnceLock;

use actix_web::http::header;
use actix_web::HttpResponse;

use crate::http::openapi::document;

/// Swagger UI (swagger-ui-dist 5, Apache-2.0), vendored from the npm registry.
static SWAGGER_UI_BUNDLE: &[u8] = include_bytes!("../assets/swagger-ui-bundle.js");
static SWAGGER_UI_CSS: &[u8] = include_bytes!("../assets/swagger-ui.css");
/// The page; `__ASSET_VERSION__` is replaced by a hash of the two assets,
/// so that their long cache lifetime never serves a stale copy.
const DOCS_HTML: &str = include_str!("../assets/docs.html");

const ASSET_CACHE: &str = "public, max-age=31536000, immutable";

/// The page may load nothing from elsewhere and talk only to this service.
const DOCS_CSP: &str = "default-src 'none'; script-src 'self' 'unsafe-inline'; \
                        style-src 'self' 'unsafe-inline'; img-src 'self' data:; \
                        connect-src 'self'; base-uri 'none'; form-action 'none'; \
                        frame-ancestors 'none'";

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

/// The page as served one level down (`/docs/`, `/docs/index.html`): its
/// relative links (`docs/...`, `openapi.json`) resolve from the directory
/// above, so the page works under a path prefix too.
fn docs_page_nested() -> &'static str {
    static PAGE: OnceLock<String> = OnceLock::new();
    PAGE.get_or_init(|| docs_page().replacen("<head>", "<head>\n  <base href=\"../\">", 1))
}

/// The nested page names its base (`../`); nothing else may.
const DOCS_NESTED_CSP: &str = "default-src 'none'; script-src 'self' 'unsafe-inline'; \
                               style-src 'self' 'unsafe-inline'; img-src 'self' data:; \
                               connect-src 'self'; base-uri 'self'; form-action 'none'; \
                               frame-ancestors 'none'";

fn html(page: &'static str, csp: &'static str) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header((header::CONTENT_SECURITY_POLICY, csp))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .body(page)
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
    html(docs_page(), DOCS_CSP)
}

/// The API documentation page (as `/docs/`)
///
/// The same page as `/docs`.
#[utoipa::path(
    get,
    path = "/docs/",
    tag = "service",
    security(()),
    responses((status = 200, description = "The HTML page", content_type = "text/html")),
)]
pub async fn docs_dir() -> HttpResponse {
    html(docs_page_nested(), DOCS_NESTED_CSP)
}

// `/docs/index.html` is served by `docs_dir`; documented by this item.

/// The API documentation page (as `/docs/index.html`)
///
/// The same page as `/docs`.
#[utoipa::path(
    get,
    path = "/docs/index.html",
    tag = "service",
    security(()),
    responses((status = 200, description = "The HTML page", content_type = "text/html")),
)]
#[allow(dead_code)]
pub fn docs_index_html() {}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_docs_page_names_its_assets_with_their_version() {
        let page = docs_page();
        assert!(!page.contains("__ASSET_VERSION__"));
        assert!(page.contains("docs/swagger-ui-bundle.js?v="));
        assert!(page.contains("docs/swagger-ui.css?v="));
        assert!(!page.contains("http://") && !page.contains("https://"));
        assert!(docs_page_nested().contains("<base href=\"../\">"));
    }
}
