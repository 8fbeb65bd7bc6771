//! The OpenAPI document: routes describe themselves with `#[utoipa::path]`; [`finish`] adds what
//! every operation shares (bearer auth, problem responses, the `X-Request-Id` header).
use super::problem::Problem;
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, HeaderBuilder, OpenApi, Ref, RefOr, ResponseBuilder};
use utoipa::{Modify, OpenApi as _};

#[derive(utoipa::OpenApi)]
#[openapi(
    info(title = "IPM — Integration Plane Management", description = "Events in; catalog, CDC, webhooks, exports and alerts out. Errors are RFC 9457 problem+json."),
    modifiers(&Bearer),
    security(("bearer" = [])),
    components(schemas(Problem)),
    tags((name = "events", description = "Event ingestion"), (name = "cdc", description = "Change feed"),
         (name = "keys", description = "API keys"), (name = "catalog", description = "Event catalog, lifecycles, specimens, contracts"), (name = "ops", description = "Health and metrics"),
         (name = "webhooks", description = "Webhook subscriptions, deliveries, replay"), (name = "inbox", description = "Operator inbox"),
         (name = "kpis", description = "KPI snapshots and buckets"), (name = "alerts", description = "Alert rules and alert instances"))
)]
struct Base;

struct Bearer;

impl Modify for Bearer {
    fn modify(&self, doc: &mut OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("ipm_<key id>_<secret>")
                    .build(),
            ),
        );
    }
}

/// The document before routes are merged in.
pub fn base() -> OpenApi {
    Base::openapi()
}

const SHARED: &[(&str, &str)] = &[
    ("400", "bad input (problem+json with a stable `code`)"),
    ("401", "missing or unknown API key"),
    ("403", "the key may not do this"),
    ("404", "not found (also for another org's resources)"),
    ("405", "method not allowed"),
    ("413", "body, batch or payload over its limit"),
    ("415", "unsupported content type"),
    ("503", "the store is unavailable"),
];

fn problem_response(description: &str) -> RefOr<utoipa::openapi::Response> {
    RefOr::T(
        ResponseBuilder::new()
            .description(description)
            .content(
                "application/problem+json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("Problem")))
                    .build(),
            )
            .header("X-Request-Id", request_id_header())
            .build(),
    )
}

fn request_id_header() -> utoipa::openapi::header::Header {
    HeaderBuilder::new()
        .schema(Some(utoipa::openapi::schema::Object::with_type(
            utoipa::openapi::schema::Type::String,
        )))
        .description(Some("echoed from the request, or generated"))
        .build()
}

fn decorate(op: &mut Operation, public: bool) {
    for (_, r) in op.responses.responses.iter_mut() {
        if let RefOr::T(r) = r {
            r.headers
                .entry("X-Request-Id".into())
                .or_insert_with(|| RefOr::T(request_id_header()));
        }
    }
    for (code, description) in SHARED {
        if public && !matches!(*code, "405" | "503") {
            continue;
        }
        op.responses
            .responses
            .entry((*code).to_string())
            .or_insert_with(|| problem_response(description));
    }
}

/// Where the server serves this document (outside the `#[utoipa::path]` routes, since the
/// handler needs the finished document).
pub const DOC_PATH: &str = "/v1/openapi.json";

fn document_operation() -> Operation {
    use utoipa::openapi::path::OperationBuilder;
    use utoipa::openapi::schema::{Object, Type};
    use utoipa::openapi::security::SecurityRequirement;
    OperationBuilder::new()
        .tag("ops")
        .summary(Some("This OpenAPI document"))
        .operation_id(Some("openapi"))
        .security(SecurityRequirement::default())
        .response(
            "200",
            ResponseBuilder::new()
                .description("the OpenAPI document")
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Object::with_type(Type::Object)))
                        .build(),
                )
                .build(),
        )
        .build()
}

/// Adds the document's own route and the shared responses to every operation.
pub fn finish(mut doc: OpenApi) -> OpenApi {
    doc.paths.add_path_operation(
        DOC_PATH,
        vec![utoipa::openapi::HttpMethod::Get],
        document_operation(),
    );
    for (path, item) in doc.paths.paths.iter_mut() {
        let public = !path.starts_with("/v1/") || path == DOC_PATH;
        for op in [
            &mut item.get,
            &mut item.post,
            &mut item.put,
            &mut item.patch,
            &mut item.delete,
        ]
        .into_iter()
        .flatten()
        {
            decorate(op, public);
        }
    }
    doc
}
