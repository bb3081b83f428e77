//! `ubdcc replay DIR`: serve a recording through Binance's protocol on one port until Ctrl-C or
//! SIGTERM (`ubdcc_sim::replay`; the format is in docs/recording.md).

use anyhow::Context as _;
use ubdcc_sim::replay::ReplayConfig;

use crate::cli::ReplayArgs;

/// Binds the port, prints `listening on <addr>` once bound (the line scripts and tests wait
/// for), and serves the recording until Ctrl-C or SIGTERM. A bad `--speed`, an unreadable
/// recording and one of two exchanges of one family are refused before anything is bound; a `--host` beyond loopback is served with a warning (the replay has no
/// authentication, only small limits).
pub fn run(args: &ReplayArgs) -> anyhow::Result<()> {
    let config = ReplayConfig {
        dir: args.dir.clone(),
        speed: args.speed,
        from_ns: args.from,
        to_ns: args.to,
    };
    config.validate().context("--speed")?;
    // Before binding: a script waiting for `listening on` gets the refusal instead.
    ubdcc_sim::replay::check_recording(&args.dir)
        .with_context(|| format!("replaying {}", args.dir.display()))?;
    if !args.host.is_loopback() {
        tracing::warn!(host = %args.host, "the replay listens beyond loopback: anyone who can reach it may use it (it has no authentication)");
    }
    crate::sim::serve_announced(args.host, args.port, |listener, shutdown| async move {
        ubdcc_sim::replay::replay(listener, config, shutdown)
            .await
            .with_context(|| format!("replaying {}", args.dir.display()))
    })
}

/// A time given as Unix seconds (up to 11 digits), Unix ms (more digits) or UTC
/// `YYYY-MM-DDTHH:MM:SS` (a trailing `Z` allowed), as Unix ns. Times past what Unix ns hold in
/// a `u64` (the year 2554) are refused, not wrapped.
pub fn parse_time(text: &str) -> Result<u64, String> {
    let bad = || format!("{text:?} is not Unix seconds, Unix ms or YYYY-MM-DDTHH:MM:SS");
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        let value: u64 = text.parse().map_err(|_| bad())?;
        let ns = if text.len() <= 11 {
            value.checked_mul(1_000_000_000)
        } else {
            value.checked_mul(1_000_000)
        };
        return ns.ok_or_else(bad);
    }
    let text = text.strip_suffix('Z').unwrap_or(text);
    let (date, time) = text.split_once('T').ok_or_else(bad)?;
    let numbers = |part: &str, sep: char| -> Option<Vec<u64>> {
        part.split(sep).map(|n| n.parse().ok()).collect()
    };
    let (Some(date), Some(time)) = (numbers(date, '-'), numbers(time, ':')) else {
        return Err(bad());
    };
    let (&[year, month, day], &[hour, minute, second]) = (&date[..], &time[..]) else {
        return Err(bad());
    };
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
        || !(1970..=9999).contains(&year)
    {
        return Err(bad());
    }
    // The year bound keeps the day count small; the seconds may still pass u64 ns (2554).
    let days = days_from_civil(year, month, day);
    days.checked_mul(86_400)
        .and_then(|s| s.checked_add(hour * 3600 + minute * 60 + second))
        .and_then(|s| s.checked_mul(1_000_000_000))
        .ok_or_else(bad)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: u64, month: u64, day: u64) -> u64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year / 400;
    let yoe = year - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_read_in_every_form() {
        assert_eq!(parse_time("1796425555"), Ok(1_796_425_555_000_000_000));
        assert_eq!(parse_time("1796425555123"), Ok(1_796_425_555_123_000_000));
        assert_eq!(
            parse_time("2026-12-04T23:05:55Z"),
            Ok(1_796_425_555_000_000_000)
        );
        assert_eq!(parse_time("1970-01-01T00:00:00"), Ok(0));
        assert!(parse_time("yesterday").is_err());
        assert!(parse_time("2026-13-01T00:00:00").is_err());
    }

    #[test]
    fn times_beyond_unix_ns_are_errors_not_a_panic() {
        for text in [
            "2555-01-01T00:00:00",
            "9999-12-31T23:59:59",
            "18446744073709551615-01-01T00:00:00",
            "99999999999999999999",
            "18446744073709551615",
        ] {
            assert!(parse_time(text).is_err(), "{text}");
        }
        assert!(parse_time("2554-01-01T00:00:00").is_ok());
    }

    #[test]
    fn a_bad_speed_is_refused_before_serving() {
        let args = ReplayArgs {
            dir: std::path::PathBuf::from("/nonexistent"),
            host: std::net::Ipv4Addr::LOCALHOST.into(),
            port: 0,
            speed: 1e-300,
            from: None,
            to: None,
        };
        let error = run(&args).expect_err("refused");
        assert!(format!("{error:#}").contains("speed must be"), "{error:#}");
    }
}
