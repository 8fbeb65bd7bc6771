//! Unit tests of the catalog module. Broken-catalog fixtures live in `tests/fixtures/catalogs/`.

mod asyncapi;
mod broken;
mod embedded;
mod maturity;
