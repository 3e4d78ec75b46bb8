//! The web catalog: one self-contained, read-only page at `/` (HTML, CSS and
//! vanilla JS, no external resources) that calls the JSON API from the
//! browser: components, images, recent jobs and their live logs.

use actix_web::HttpResponse;

const INDEX_HTML: &str = include_str!("assets/index.html");

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
