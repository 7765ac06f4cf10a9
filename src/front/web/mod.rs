//! The web dashboard: static pages served at `/` by the API's server, their
//! files built into the binary (no build step, nothing fetched from elsewhere
//! at run time: it works offline). Every figure they show comes from the REST
//! API with the token the user logs in with (`api::session`).
//!
//! For work on the pages, `CLOUDRAID_WEB_DIR=src/front/web/assets` serves them
//! from that folder instead, read at each request.

use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// The dashboard's files: name and bytes.
pub const ASSETS: &[(&str, &[u8])] = &[
    ("index.html", include_bytes!("assets/index.html")),
    ("app.js", include_bytes!("assets/app.js")),
    ("style.css", include_bytes!("assets/style.css")),
    ("icon.svg", include_bytes!("assets/icon.svg")),
    ("api.js", include_bytes!("assets/api.js")),
    ("ui.js", include_bytes!("assets/ui.js")),
    ("overview.js", include_bytes!("assets/overview.js")),
    ("files.js", include_bytes!("assets/files.js")),
    ("snapshots.js", include_bytes!("assets/snapshots.js")),
    ("jobs.js", include_bytes!("assets/jobs.js")),
    ("maintenance.js", include_bytes!("assets/maintenance.js")),
];

fn asset(name: &str) -> Option<Vec<u8>> {
    if let Some(dir) = std::env::var_os("CLOUDRAID_WEB_DIR") {
        if name.contains('/') || name.contains("..") {
            return None;
        }
        return std::fs::read(std::path::Path::new(&dir).join(name)).ok();
    }
    ASSETS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, b)| b.to_vec())
}

fn serve(name: &str) -> Response {
    let Some(bytes) = asset(name) else {
        return (StatusCode::NOT_FOUND, "no such file").into_response();
    };
    let mime = mime_guess::from_path(name).first_or_octet_stream();
    let mut r = bytes.into_response();
    let h = r.headers_mut();
    if let Ok(v) = HeaderValue::from_str(mime.essence_str()) {
        h.insert(header::CONTENT_TYPE, v);
    }
    // The pages are small and change with the binary: always revalidated.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    r
}

/// `GET /`: the dashboard.
pub async fn index() -> Response {
    serve("index.html")
}

/// `GET /assets/FILE`: its scripts and styles.
pub async fn file(Path(name): Path<String>) -> Response {
    serve(&name)
}
