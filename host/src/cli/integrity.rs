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
use crate::objectstore::integrity::{self, DamageKind, Report};

use super::local::{KeyArgs, master_key};

/// Reports damage; fails (exit status 1) if there is any.
pub(super) async fn check(keys: KeyArgs) -> anyhow::Result<()> {
    let (data, backend_config) = data_of(&keys)?;
    let mut problems = 0;
    if backend_config.is_redb() {
        match backend::check_file(&data.database())? {
            FileIntegrity::Clean => {
                println!("redb: every page of the file verifies");
                // Only a report: the records are checked all the same.
                match backend::file_usage(&data.database()) {
                    Ok(usage) => print_file_usage(&usage),
                    Err(e) => println!("redb: cannot say how the file's bytes are used: {e}"),
                }
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
    println!(
        "redb: the file is {} long and takes {} on disk (the rest is reserved and not written yet)",
        size(usage.file_bytes),
        size(usage.disk_bytes),
    );
    println!(
        "redb: keys and values {} bytes ({}); page overhead (entry offsets, branch pages, \
         redb's own tables) {}; unused {} (room within pages, free pages, reserved space)",
        usage.stored_bytes,
        size(usage.stored_bytes),
        size(usage.overhead_bytes),
        size(usage.unused_bytes),
    );
    println!(
        "redb: {} leaf and {} branch pages of {} bytes, {} deep",
        usage.leaf_pages, usage.branch_pages, usage.page_size, usage.tree_height,
    );
}

/// What each kind of record takes at rest, the largest first; only as far
/// as the walk could read when it met a damaged page.
fn print_sizes(report: &Report) {
    let cut = report
        .damage
        .iter()
        .any(|d| matches!(d.kind, DamageKind::Engine(_)));
    println!(
        "records at rest (keys and sealed values){}:",
        if cut {
            ", as far as the walk could read"
        } else {
            ""
        }
    );
    for kind in &report.sizes {
        println!(
            "  {}: {} record{}, {} bytes ({}), {:.0} bytes each",
            kind.kind,
            kind.records,
            if kind.records == 1 { "" } else { "s" },
            kind.bytes,
            size(kind.bytes),
            kind.bytes as f64 / kind.records.max(1) as f64
        );
    }
}

/// `bytes` in the largest binary unit that keeps it at 1 or more.
fn size(bytes: u64) -> String {
    const UNITS: [(&str, u64); 3] = [("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)];
    UNITS
        .iter()
        .find(|(_, scale)| bytes >= *scale)
        .map_or(format!("{bytes} B"), |(unit, scale)| {
            format!("{:.1} {unit}", bytes as f64 / *scale as f64)
        })
}

#[cfg(test)]
mod tests {
    use super::size;

    #[test]
    fn sizes_print_in_the_largest_unit_that_keeps_them_at_one_or_more() {
        assert_eq!(size(0), "0 B");
        assert_eq!(size(1023), "1023 B");
        assert_eq!(size(1024), "1.0 KiB");
        assert_eq!(size(5 << 20), "5.0 MiB");
        assert_eq!(size((3 << 30) + (1 << 29)), "3.5 GiB");
    }
}
