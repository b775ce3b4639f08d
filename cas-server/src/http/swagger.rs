//! The API description and Swagger UI, compiled in from `deploy/` (no CDN): `GET /openapi.yaml`,
//! `GET /swagger-ui` (and its assets under `/swagger-ui/`). Shared with `reprovm serve`.

/// `deploy/openapi.yaml`.
pub const OPENAPI_YAML: &[u8] = include_bytes!("../../../deploy/openapi.yaml");

/// The content type and bytes for a path, when it is one of ours.
pub fn asset(path: &str) -> Option<(&'static str, &'static [u8])> {
    Some(match path {
        "/openapi.yaml" => ("application/yaml", OPENAPI_YAML),
        "/swagger-ui" | "/swagger-ui/" | "/swagger-ui/index.html" => (
            "text/html; charset=utf-8",
            include_bytes!("../../../deploy/swagger-ui/index.html"),
        ),
        "/swagger-ui/init.js" => (
            "text/javascript; charset=utf-8",
            include_bytes!("../../../deploy/swagger-ui/init.js"),
        ),
        "/swagger-ui/swagger-ui-bundle.js" => (
            "text/javascript; charset=utf-8",
            include_bytes!("../../../deploy/swagger-ui/swagger-ui-bundle.js"),
        ),
        "/swagger-ui/swagger-ui.css" => (
            "text/css; charset=utf-8",
            include_bytes!("../../../deploy/swagger-ui/swagger-ui.css"),
        ),
        "/swagger-ui/favicon-32x32.png" => (
            "image/png",
            include_bytes!("../../../deploy/swagger-ui/favicon-32x32.png"),
        ),
        _ => return None,
    })
}
