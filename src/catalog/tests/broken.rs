//! Broken catalogs under `tests/fixtures/catalogs/<case>/`: each must fail with exactly the
//! expected `file: pointer: message` lines, all of them, and nothing else.

use std::path::PathBuf;

use crate::catalog::Catalog;

pub(super) fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/catalogs")
        .join(name)
}

const CO: &str = "shop/events/shop.cart.checked_out.toml";
const CR: &str = "shop/events/shop.cart.created.toml";
const SVC: &str = "shop/service.toml";

fn cases() -> Vec<(&'static str, Vec<String>)> {
    let l = |file: &str, pointer: &str, message: &str| format!("{file}: {pointer}: {message}");
    vec![
        (
            "invalid_schema",
            vec![l(
                "shop/schemas/shop.cart.created.v1.json",
                "/type",
                "not a valid JSON Schema (draft 2020-12): \"objekt\" is not valid under any of the schemas listed in the 'anyOf' keyword",
            )],
        ),
        (
            "invalid_json_schema_file",
            vec![l(
                "shop/schemas/shop.cart.created.v1.json",
                "(file)",
                "invalid JSON: EOF while parsing a value at line 1 column 18",
            )],
        ),
        (
            "specimen_fails_schema",
            vec![l(
                "shop/specimens/shop.cart.checked_out.v1.json",
                "/payload/total_minor",
                "-5 is less than the minimum of 0",
            )],
        ),
        (
            "transition_unknown_type",
            vec![l(
                SVC,
                "/lifecycles/0/transitions/0/event_type",
                "unknown event type `shop.cart.paid`: not defined in shop/events",
            )],
        ),
        (
            "transition_foreign_service",
            vec![l(
                SVC,
                "/lifecycles/0/transitions/0/event_type",
                "event type `billing.invoice.paid` does not belong to service `shop`",
            )],
        ),
        (
            "redaction_pointer_unresolved",
            vec![l(
                CR,
                "/redaction/0/pointer",
                "pointer `/customer/email` does not resolve in any schema version",
            )],
        ),
        (
            "duplicate_type",
            vec![l(
                CR,
                "/event_type",
                "duplicate event type `shop.cart.created` (also defined in shop/events/shop.cart.created.copy.toml)",
            )],
        ),
        (
            "bad_name",
            vec![l(
                CO,
                "/event_type",
                "invalid event type name `shop.Cart.checked-out`: expected `service.entity.action` with lower-case [a-z0-9_] segments",
            )],
        ),
        (
            "missing_version",
            vec![l(
                CO,
                "/versions",
                "at least one schema version is required",
            )],
        ),
        (
            "bad_versions",
            vec![
                l(CO, "/versions/1/version", "duplicate version 1"),
                l(
                    CO,
                    "/versions/2/version",
                    "version must be a positive integer, got 0",
                ),
            ],
        ),
        (
            "unreachable_state",
            vec![l(
                SVC,
                "/lifecycles/0/states",
                "state `abandoned` is not reachable from initial state `open`",
            )],
        ),
        (
            "lifecycle_bad_states",
            vec![
                l(
                    SVC,
                    "/lifecycles/0/initial",
                    "initial state `new` is not one of the states",
                ),
                l(
                    SVC,
                    "/lifecycles/0/terminal/1",
                    "terminal state `gone` is not one of the states",
                ),
                l(
                    SVC,
                    "/lifecycles/0/transitions/0/to",
                    "unknown state `paid`",
                ),
            ],
        ),
        (
            "unknown_toml_key",
            vec![l(
                CR,
                "/owners",
                "unknown field `owners`, expected one of `event_type`, `entity`, `action`, `summary`, `owner`, `status`, `deprecated_since`, `deprecation_message`, `replaced_by`, `not_lifecycle_bound`, `redaction`, `versions`",
            )],
        ),
        (
            "unknown_key_in_versions",
            vec![l(
                CO,
                "/versions/0/schemas",
                "unknown field `schemas`, expected one of `version`, `schema`, `specimens`, `changes`",
            )],
        ),
        (
            "unknown_specimen_key",
            vec![l(
                "shop/specimens/shop.cart.created.v1.json",
                "/colour",
                "unknown field `colour`, expected one of `event_id`, `org_id`, `occurred_at`, `channel_id`, `facility_id`, `request_context`, `reason_code`, `source_refs`, `payload` at line 3 column 10",
            )],
        ),
        (
            "missing_schema_file",
            vec![l(
                CO,
                "/versions/0/schema",
                "schema file `shop/schemas/shop.cart.checked_out.v1.json`: file does not exist",
            )],
        ),
        (
            "missing_specimen_file",
            vec![l(
                CO,
                "/versions/0/specimens/0",
                "specimen file `shop/specimens/shop.cart.checked_out.v1.json`: file does not exist",
            )],
        ),
        (
            "missing_service_toml",
            vec![l(SVC, "(file)", "file does not exist")],
        ),
        (
            "service_folder_mismatch",
            vec![l(
                SVC,
                "/service",
                "service `store` does not match its folder `shop`",
            )],
        ),
        (
            "deprecated_without_notice",
            vec![
                l(
                    CO,
                    "/deprecated_since",
                    "required when status is `deprecated`",
                ),
                l(
                    CO,
                    "/deprecation_message",
                    "required when status is `deprecated`",
                ),
                l(CO, "/replaced_by", "unknown event type `shop.cart.gone`"),
            ],
        ),
        (
            "bad_specimen_envelope",
            vec![
                l(
                    "shop/specimens/shop.cart.created.v1.json",
                    "/event_id",
                    "event_id must be 1..128 chars of [A-Za-z0-9._:-]",
                ),
                l(
                    "shop/specimens/shop.cart.created.v1.json",
                    "/occurred_at",
                    "`yesterday` is not an RFC 3339 timestamp",
                ),
                l(
                    "shop/specimens/shop.cart.created.v1.json",
                    "/payload/customer_email",
                    "\"nope\" is not a \"email\"",
                ),
            ],
        ),
        (
            "entity_mismatch",
            vec![
                l(
                    CR,
                    "/entity",
                    "entity `basket` does not match the event type's entity segment `cart`",
                ),
                l(
                    CR,
                    "/entity",
                    "entity `basket` is not declared in shop/service.toml",
                ),
            ],
        ),
    ]
}

#[test]
fn every_broken_catalog_fails_with_the_precise_lines() {
    let cases = cases();
    assert!(cases.len() >= 10);
    let mut failures = Vec::new();
    for (name, expected) in cases {
        match Catalog::load_dir(&fixture(name)) {
            Ok(_) => failures.push(format!("{name}: loaded, but should fail")),
            Err(errors) => {
                let got = errors.to_string();
                let want = expected.join("\n");
                if got != want {
                    failures.push(format!("{name}:\n  want: {want}\n  got:  {got}"));
                }
                assert_eq!(errors.errors.len(), expected.len(), "{name}");
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_base_of_the_broken_fixtures_is_valid() {
    let c = match Catalog::load_dir(&fixture("valid_minimal")) {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(c.event_types().len(), 2);
}

#[test]
fn a_missing_directory_is_a_check_error_not_a_panic() {
    let Err(e) = Catalog::load_dir(&fixture("does_not_exist")) else {
        panic!("loaded a missing dir")
    };
    assert_eq!(e.errors.len(), 1);
    assert!(
        e.to_string()
            .ends_with("(file): catalog directory does not exist or is not a directory")
    );
}
