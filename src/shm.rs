//! `ubdcc shm`: look at a cluster's segments, and drive the torture-test pattern writer; also
//! the parsers of the DCN's segment access flags (`--shm-mode`, `--shm-group`).

use std::io::Write as _;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use ubdcc_shm::{ClusterReader, HEARTBEAT_INTERVAL, SegmentConfig, test_pattern};

use crate::cli::{ListArgs, TestPatternArgs};

/// Prints every book of the cluster, one line per replica.
pub fn list(args: &ListArgs) -> anyhow::Result<()> {
    let mut reader = ClusterReader::open(&args.cluster)
        .with_context(|| format!("opening cluster {:?}", args.cluster))?;
    let books = reader.list();
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{:<36} {:<24} {:<28} STATUS",
        "EXCHANGE", "MARKET", "SEGMENT"
    )?;
    for book in &books {
        let status = match &book.status {
            Ok(status) => status.to_string(),
            Err(error) => format!("unreadable: {error}"),
        };
        writeln!(
            out,
            "{:<36} {:<24} {:<28} {status}",
            book.exchange, book.market, book.segment
        )?;
    }
    for error in reader.open_errors() {
        writeln!(out, "warning: {error}")?;
    }
    let ignored: Vec<_> = reader.ignored().collect();
    for segment in &ignored {
        writeln!(out, "ignored: {segment}")?;
    }
    writeln!(
        out,
        "{} books in {} segments of cluster '{}' (trusting {}; {} segments ignored)",
        books.len(),
        reader.segments().len(),
        args.cluster,
        reader.trust(),
        ignored.len()
    )?;
    Ok(())
}

/// Parses `--shm-mode`: octal permission bits (`0640` or `640`), a subset of `0644`.
pub fn parse_segment_mode(text: &str) -> Result<u32, String> {
    let digits = text.strip_prefix("0o").unwrap_or(text);
    let mode = u32::from_str_radix(digits, 8)
        .map_err(|_| format!("{text:?} is not an octal mode such as 0600 or 0640"))?;
    if mode & !0o644 != 0 {
        return Err(format!(
            "mode {mode:04o} is not allowed: use a subset of 0644 (readers refuse segments that group or others may write)"
        ));
    }
    Ok(mode)
}

/// Parses `--shm-group`: a gid, or a group name from `/etc/group`.
pub fn parse_group(text: &str) -> Result<u32, String> {
    if let Ok(gid) = text.parse() {
        return Ok(gid);
    }
    let groups = std::fs::read_to_string("/etc/group")
        .map_err(|error| format!("reading /etc/group to look up group {text:?}: {error}"))?;
    gid_of(&groups, text).ok_or_else(|| format!("no group {text:?} in /etc/group; give its gid"))
}

/// The gid of group `name` in the text of `/etc/group` (`name:password:gid:members`).
fn gid_of(groups: &str, name: &str) -> Option<u32> {
    groups.lines().find_map(|line| {
        let mut fields = line.split(':');
        if fields.next()? != name {
            return None;
        }
        fields.nth(1)?.parse().ok()
    })
}

/// Publishes pattern versions 1, 2, 3, … round-robin over the books, with a heartbeat, and prints
/// `ready <segment>` once the first version of every book is visible.
pub fn test_pattern(args: &TestPatternArgs) -> anyhow::Result<()> {
    let mut writer = SegmentConfig::new(args.cluster.as_str(), args.dcn.as_str())
        .books(args.books)
        .levels_per_side(args.levels)
        .create()
        .context("creating the pattern segment")?;
    let mut handles = Vec::new();
    for i in 0..args.books {
        handles.push(writer.add_book("binance.com", &format!("PATTERN{i}"))?);
    }
    let mut scratch = test_pattern::PatternScratch::default();
    // Most versions go out as edits (the DCN's publish path), one in 16 whole.
    let publish = |writer: &mut ubdcc_shm::SegmentWriter, k: u64, scratch: &mut _| {
        let book = handles[(k % handles.len() as u64) as usize];
        test_pattern::publish(writer, book, k, scratch)
    };
    let mut k = 1;
    while k <= handles.len() as u64 {
        publish(&mut writer, k, &mut scratch)?;
        k += 1;
    }
    writer.heartbeat();
    println!("ready {}", writer.name());
    std::io::stdout().flush()?;

    let started = Instant::now();
    let deadline = (args.duration > 0).then(|| started + Duration::from_secs(args.duration));
    let pause = (args.rate > 0).then(|| Duration::from_nanos(1_000_000_000 / args.rate));
    let mut last_beat = Instant::now();
    loop {
        publish(&mut writer, k, &mut scratch)?;
        k += 1;
        if let Some(pause) = pause {
            sleep_beating(&writer, pause);
        }
        // Checking the clock costs more than a publish of a small book, so do it every 256.
        if k % 256 != 0 && pause.is_none() {
            continue;
        }
        let now = Instant::now();
        if now.duration_since(last_beat) >= HEARTBEAT_INTERVAL {
            writer.heartbeat();
            last_beat = now;
        }
        if deadline.is_some_and(|deadline| now >= deadline) {
            tracing::info!(versions = k - 1, "pattern writer done");
            return Ok(());
        }
    }
}

/// Sleeps for `pause` in slices of at most one heartbeat interval, beating after each, so a slow
/// `--rate` never looks like a hung writer.
fn sleep_beating(writer: &ubdcc_shm::SegmentWriter, pause: Duration) {
    let mut left = pause;
    while !left.is_zero() {
        let slice = left.min(HEARTBEAT_INTERVAL);
        std::thread::sleep(slice);
        left -= slice;
        if !left.is_zero() {
            writer.heartbeat();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_modes_are_octal_and_never_writable_by_others() {
        assert_eq!(parse_segment_mode("0600"), Ok(0o600));
        assert_eq!(parse_segment_mode("640"), Ok(0o640));
        assert_eq!(parse_segment_mode("0o644"), Ok(0o644));
        for bad in ["0660", "0666", "0700", "4600", "rw", "0800", ""] {
            assert!(parse_segment_mode(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn groups_are_gids_or_names_from_etc_group() {
        let groups = "root:x:0:\nubdcc:x:2001:alice,bob\nbroken\n";
        assert_eq!(gid_of(groups, "ubdcc"), Some(2001));
        assert_eq!(gid_of(groups, "root"), Some(0));
        assert_eq!(gid_of(groups, "alice"), None);
        assert_eq!(parse_group("2001"), Ok(2001));
        assert_eq!(parse_group("root"), Ok(0));
        assert!(parse_group("no-such-group-here").is_err());
    }
}
