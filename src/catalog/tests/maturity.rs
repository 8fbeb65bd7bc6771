//! The maturity scorecard of `tests/fixtures/catalogs/maturity_gaps/`, a hand-built catalog with
//! known gaps, asserted check by check.

use super::broken::fixture;
use crate::catalog::{Catalog, CheckOutcome, EventTypeMaturity, Level, Scorecard};

fn scorecard() -> Scorecard {
    match Catalog::load_dir(&fixture("maturity_gaps")) {
        Ok(c) => c.maturity(),
        Err(e) => panic!("{e}"),
    }
}

fn of<'a>(s: &'a Scorecard, name: &str) -> &'a EventTypeMaturity {
    s.event_types
        .iter()
        .find(|m| m.event_type == name)
        .unwrap_or_else(|| panic!("{name} missing"))
}

fn pass(reason: &str) -> CheckOutcome {
    CheckOutcome {
        pass: true,
        reason: reason.into(),
    }
}

fn fail(reason: &str) -> CheckOutcome {
    CheckOutcome {
        pass: false,
        reason: reason.into(),
    }
}

#[test]
fn checked_out_lacks_a_schema_and_specimens() {
    let s = scorecard();
    let m = of(&s, "shop.cart.checked_out");
    assert_eq!(m.checks.schema, fail("no JSON Schema for v2"));
    assert_eq!(m.checks.specimen_validates, fail("no specimen for v2, v3"));
    assert_eq!(
        m.checks.lifecycle_coverage,
        pass("transition open -> checked_out of lifecycle `cart`")
    );
    assert_eq!(
        m.checks.redaction_metadata,
        pass("explicitly declared empty")
    );
    assert_eq!(m.checks.owner, pass("owned by team-checkout"));
    assert_eq!(m.checks.not_deprecated, pass("status is stable"));
    assert_eq!((m.passed, m.level), (4, Level::Unrated));
}

#[test]
fn created_lacks_an_owner_and_redaction_metadata() {
    let s = scorecard();
    let m = of(&s, "shop.cart.created");
    assert_eq!(
        m.checks.schema,
        pass("1 version(s), each with a JSON Schema")
    );
    assert_eq!(
        m.checks.specimen_validates,
        pass("1 specimen(s) validate against their schemas")
    );
    assert_eq!(
        m.checks.lifecycle_coverage,
        pass("enters lifecycle `cart` in state open")
    );
    assert_eq!(
        m.checks.redaction_metadata,
        fail("no redaction metadata, but personal-data-looking fields: /customer_email")
    );
    assert_eq!(
        m.checks.owner,
        fail("no owner in the event file or in service.toml")
    );
    assert_eq!(m.checks.not_deprecated, pass("status is stable"));
    assert_eq!((m.passed, m.level), (4, Level::Bronze));
}

#[test]
fn merged_is_deprecated_unbound_and_partly_redacted() {
    let s = scorecard();
    let m = of(&s, "shop.cart.merged");
    assert_eq!(
        m.checks.schema,
        pass("1 version(s), each with a JSON Schema")
    );
    assert_eq!(
        m.checks.specimen_validates,
        pass("1 specimen(s) validate against their schemas")
    );
    assert_eq!(
        m.checks.lifecycle_coverage,
        fail("not used by any lifecycle and not documented as not_lifecycle_bound")
    );
    assert_eq!(
        m.checks.redaction_metadata,
        fail("personal-data-looking fields without redaction metadata: /guest_phone")
    );
    assert_eq!(m.checks.owner, pass("owned by team-shop"));
    assert_eq!(
        m.checks.not_deprecated,
        fail("deprecated since 2026-01-31: Merging is gone; carts are per device now.")
    );
    assert_eq!((m.passed, m.level), (3, Level::Bronze));
}

#[test]
fn the_service_aggregates_its_types() {
    let s = scorecard();
    assert_eq!(s.services.len(), 1);
    let svc = &s.services[0];
    assert_eq!(
        (svc.service.as_str(), svc.event_types, svc.level),
        ("shop", 3, Level::Unrated)
    );
    assert_eq!(svc.checks.schema, fail("fails for shop.cart.checked_out"));
    assert_eq!(
        svc.checks.specimen_validates,
        fail("fails for shop.cart.checked_out")
    );
    assert_eq!(
        svc.checks.lifecycle_coverage,
        fail("fails for shop.cart.merged")
    );
    assert_eq!(
        svc.checks.redaction_metadata,
        fail("fails for shop.cart.created, shop.cart.merged")
    );
    assert_eq!(svc.checks.owner, fail("fails for shop.cart.created"));
    assert_eq!(
        svc.checks.not_deprecated,
        fail("fails for shop.cart.merged")
    );
}

#[test]
fn a_version_without_schema_accepts_any_payload() {
    let c = match Catalog::load_dir(&fixture("maturity_gaps")) {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(
        c.validate_payload("shop.cart.checked_out", 2, &serde_json::json!({"x": 1})),
        Ok(())
    );
}
