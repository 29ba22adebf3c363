//! `ostore check` and `ostore repair`: offline commands on a data
//! directory's records (see [`objectstore::integrity`]), plus, on redb, the
//! engine's own check of its file.
//!
//! Both need the data to themselves: on redb a running host holds the file
//! and they refuse; on Redis they must be run while no host writes (see
//! the module above for why).

use anyhow::{Context, bail};

use crate::backend::FileUsage;
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
            FileIntegrity::Clean => {
                println!("redb: every page of the file verifies");
                print_file_usage(&backend::file_usage(&data.database())?);
            }
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
    print_sizes(&report);
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

/// How redb uses the file's bytes: where disk per key goes, beyond the
/// records themselves ([`print_sizes`]).
fn print_file_usage(usage: &FileUsage) {
    let share = |bytes: u64| {
        format!(
            "{} ({:.0} %)",
            mib(bytes),
            100.0 * bytes as f64 / usage.file_bytes.max(1) as f64
        )
    };
    println!(
        "redb: the file takes {}: keys and values {}, branch keys and redb's own tables {}, \
         unused room in pages and free pages {}; {} leaf and {} branch pages of {} bytes, {} deep",
        mib(usage.file_bytes),
        share(usage.stored_bytes),
        share(usage.metadata_bytes),
        share(usage.fragmented_bytes),
        usage.leaf_pages,
        usage.branch_pages,
        usage.page_size,
        usage.tree_height,
    );
}

/// What each kind of record takes at rest, the largest first.
fn print_sizes(report: &Report) {
    println!("records at rest (keys and sealed values):");
    for size in &report.sizes {
        println!(
            "  {}: {} record{}, {} bytes ({}), {:.0} bytes each",
            size.kind,
            size.records,
            if size.records == 1 { "" } else { "s" },
            size.bytes,
            mib(size.bytes),
            size.bytes as f64 / size.records.max(1) as f64
        );
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / f64::from(1 << 20))
}
