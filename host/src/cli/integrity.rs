//! `ostore check` and `ostore repair`: offline commands on a data
//! directory's records (see [`objectstore::integrity`]), plus, on redb, the
//! engine's own check of its file.
//!
//! Both need the data to themselves: on redb a running host holds the file
//! and they refuse; on Redis they must be run while no host writes (see
//! the module above for why).

use anyhow::{Context, bail};

use crate::backend::{self, BackendConfig, FileIntegrity};
use crate::host::DataDir;
use crate::objectstore::integrity::{self, Report};

use super::local::{KeyArgs, master_key};

/// Reports damage; fails (exit status 1) if there is any.
pub(super) async fn check(keys: KeyArgs) -> anyhow::Result<()> {
    let (data, backend_config) = data_of(&keys)?;
    let mut problems = 0;
    if backend_config.is_redb() {
        match backend::check_file(&data.database())? {
            FileIntegrity::Clean => println!("redb: every page of the file verifies"),
            FileIntegrity::Repairable => {
                problems += 1;
                println!(
                    "damage: redb: pages of the file fail their checksums \
                     (repair goes back to the last commit that verifies)"
                );
            }
            // Reported, and the walk still runs: redb reads what it can
            // without checksums, and the walk says which records it met.
            FileIntegrity::Corrupted(why) => {
                problems += 1;
                println!("damage: redb: the file fails its check beyond redb's repair: {why}");
            }
        }
    }
    let master = master_key(&data, keys.key_file.as_deref())?;
    let backend = open(&data, &backend_config).await?;
    let report = integrity::check(&*backend, &master)
        .await
        .context("cannot check the records")?;
    print_report(&report, "damage");
    problems += report.damage.len();
    if problems > 0 {
        bail!("{problems} problems found; `ostore repair` mends what it can");
    }
    Ok(())
}

/// Repairs what can be, then checks again; fails if damage remains.
pub(super) async fn repair(keys: KeyArgs) -> anyhow::Result<()> {
    let (data, backend_config) = data_of(&keys)?;
    let mut file_left = false;
    if backend_config.is_redb() {
        match backend::repair_file(&data.database()) {
            Ok(true) => println!("redb: every page of the file verifies"),
            Ok(false) => {
                println!("redb: repaired the file (back to its last commit that verifies)")
            }
            // The records are still mended where they can be; the check
            // after the repair reports the file again, and fails.
            Err(e) => {
                file_left = true;
                println!("left: redb cannot repair the file: {e}");
            }
        }
    }
    let master = master_key(&data, keys.key_file.as_deref())?;
    let backend = open(&data, &backend_config).await?;
    let report = integrity::repair(&*backend, &master)
        .await
        .context("cannot repair the records")?;
    print_report(&report, "repaired");
    let after = integrity::check(&*backend, &master)
        .await
        .context("cannot check the records after repair")?;
    if !after.is_clean() || file_left {
        print_report(&after, "left");
        let left = after.damage.len() + usize::from(file_left);
        bail!("{left} problems are left after repair");
    }
    println!("the records are clean now");
    Ok(())
}

/// The data directory and backend of `keys`; on redb, the database must
/// exist (a check of nothing would make an empty one).
fn data_of(keys: &KeyArgs) -> anyhow::Result<(DataDir, BackendConfig)> {
    let data = DataDir::new(&keys.data_dir);
    let mut backend = keys.backend.clone();
    super::up::redis_password_from_env(&mut backend);
    if backend.is_redb() && !data.database().exists() {
        bail!("no database at {}", data.database().display());
    }
    Ok((data, backend))
}

async fn open(
    data: &DataDir,
    config: &BackendConfig,
) -> anyhow::Result<std::sync::Arc<dyn backend::Backend>> {
    config
        .open(&data.database())
        .await
        .with_context(|| format!("cannot open the data of {}", data.path().display()))
}

/// Prints each damage on a line of its own, `label: ...`, then a summary.
fn print_report(report: &Report, label: &str) {
    for damage in &report.damage {
        println!("{label}: {damage}");
    }
    if report.quarantined > 0 {
        println!(
            "{} records were set aside by earlier repairs (under the `q` prefix)",
            report.quarantined
        );
    }
    println!(
        "{} records read, {} problems",
        report.records,
        report.damage.len()
    );
}
