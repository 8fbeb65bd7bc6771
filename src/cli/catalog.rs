//! `ipm catalog check DIR`: the same checks the server runs at start, offline.
use crate::catalog::Catalog;
use clap::{Args, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct CatalogArgs {
    #[command(subcommand)]
    cmd: CatalogCmd,
}

#[derive(Debug, Subcommand)]
enum CatalogCmd {
    /// Check a catalog directory; prints every problem as `file: pointer: message`.
    Check { dir: PathBuf },
}

pub fn run(a: CatalogArgs) -> anyhow::Result<()> {
    let CatalogCmd::Check { dir } = a.cmd;
    match Catalog::load_dir(&dir) {
        Ok(c) => {
            println!(
                "catalog {} is valid: {} event types, {} lifecycles",
                dir.display(),
                c.event_types().len(),
                c.lifecycles().len()
            );
            Ok(())
        }
        Err(e) => {
            eprintln!("{e}");
            anyhow::bail!(
                "the catalog in {} is invalid ({} problem(s))",
                dir.display(),
                e.errors.len()
            )
        }
    }
}
