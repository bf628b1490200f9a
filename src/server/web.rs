//! The dashboard's assets, embedded in the binary so it runs from any
//! directory with no network: our own HTML, CSS and JS from `web/`, and
//! Chart.js and Swagger UI from the npm packages that `build.rs` installs.

use poem::http::{StatusCode, header};
use poem::web::Path;
use poem::{Response, handler};

pub const INDEX_HTML: &str = include_str!("../../web/index.html");

/// Scripts and styles only from this server; no inline script, no framing.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; \
     frame-ancestors 'none'; form-action 'none'";

const ASSETS: &[(&str, &str, &[u8])] = &[
    (
        "style.css",
        "text/css; charset=utf-8",
        include_bytes!("../../web/style.css"),
    ),
    (
        "js/main.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../web/js/main.js"),
    ),
    (
        "js/charts.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../web/js/charts.js"),
    ),
    (
        "js/format.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../web/js/format.js"),
    ),
    (
        "js/live.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../web/js/live.js"),
    ),
    (
        "js/view.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../web/js/view.js"),
    ),
    (
        "js/alerts.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../web/js/alerts.js"),
    ),
    (
        "js/docs.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../web/js/docs.js"),
    ),
    (
        "vendor/swagger-ui-bundle.js",
        "text/javascript; charset=utf-8",
        include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/web/node_modules/swagger-ui-dist/swagger-ui-bundle.js"
        )),
    ),
    (
        "vendor/swagger-ui.css",
        "text/css; charset=utf-8",
        include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/web/node_modules/swagger-ui-dist/swagger-ui.css"
        )),
    ),
    (
        "vendor/chart.umd.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/web/node_modules/chart.js/dist/chart.umd.min.js"
        )),
    ),
];

#[handler]
pub fn asset(Path(path): Path<String>) -> Response {
    match ASSETS.iter().find(|(name, _, _)| *name == path) {
        Some((_, content_type, bytes)) => Response::builder()
            .content_type(*content_type)
            .header(header::CACHE_CONTROL, "no-cache")
            .header(header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY)
            .body(*bytes),
        None => Response::builder()
            .status(StatusCode::NOT_FOUND)
            .content_type("application/json")
            .body(r#"{"error":"not_found","message":"no such asset"}"#),
    }
}

#[cfg(test)]
mod tests {
    use super::ASSETS;

    #[test]
    fn every_script_and_style_of_the_dashboard_is_served() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/web");
        for sub in ["js", ""] {
            let entries = std::fs::read_dir(format!("{dir}/{sub}")).expect("web/ is readable");
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().to_string();
                if !(name.ends_with(".js") || name.ends_with(".css")) {
                    continue;
                }
                let path = if sub.is_empty() {
                    name
                } else {
                    format!("{sub}/{name}")
                };
                assert!(
                    ASSETS.iter().any(|(p, _, _)| *p == path),
                    "web/{path} is not in ASSETS: the page would get a 404"
                );
            }
        }
    }
}
