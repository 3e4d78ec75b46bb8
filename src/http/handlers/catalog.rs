//! The web catalog: one self-contained, read-only page at `/` (HTML, CSS and
//! vanilla JS, no external resources) that calls the JSON API from the
//! browser: components, images, recent jobs and their live logs.

use actix_web::HttpResponse;

const INDEX_HTML: &str = include_str!("../assets/index.html");

/// The page may load nothing from elsewhere and talk only to this service.
const CSP: &str = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
                   img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; \
                   frame-ancestors 'none'";

/// GET / and GET /index.html
pub async fn index() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header(("Cache-Control", "no-cache"))
        .insert_header(("Content-Security-Policy", CSP))
        .insert_header(("X-Content-Type-Options", "nosniff"))
        .insert_header(("Referrer-Policy", "no-referrer"))
        .body(INDEX_HTML)
}

// `/` and `/index.html` are served by `index`; documented as two
// operations (one per path), by these two items that nothing calls.

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
pub fn catalog() {}

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
pub fn catalog_index_html() {}
