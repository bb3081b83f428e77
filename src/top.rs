//! `ubdcc top EXCHANGE MARKET`: a live view of one book, read from shared memory on this machine
//! like any local reader (no mgmt, no HTTP).

use std::fmt::Write as _;
use std::io::Write as _;
use std::time::Duration;

use anyhow::Context as _;
use ubdcc_shm::{BookInfo, ClusterReader, Level, LevelQuery, ReadError, Side};

use crate::cli::TopArgs;

/// Shows the book until Ctrl-C (or one frame with `--once`).
pub fn run(args: &TopArgs) -> anyhow::Result<()> {
    let mut reader = ClusterReader::open(&args.cluster)
        .with_context(|| format!("opening cluster {:?}", args.cluster))?;
    let mut out = std::io::stdout().lock();
    loop {
        let frame = frame(&mut reader, args);
        if args.once {
            writeln!(out, "{frame}")?;
            return Ok(());
        }
        // Clear the screen, cursor home, then the frame.
        write!(out, "\x1b[2J\x1b[H{frame}")?;
        out.flush()?;
        std::thread::sleep(Duration::from_millis(args.interval_ms.max(20)));
    }
}

/// One screen: status line, asks (best at the bottom), spread, bids (best at the top).
fn frame(reader: &mut ClusterReader, args: &TopArgs) -> String {
    let query = LevelQuery::top(args.levels);
    let (mut asks, mut bids) = (Vec::new(), Vec::new());
    let read = reader
        .read(&args.exchange, &args.market, Side::Asks, &query, &mut asks)
        .and_then(|_| reader.read(&args.exchange, &args.market, Side::Bids, &query, &mut bids));
    let mut out = format!("{} {}  ", args.exchange, args.market);
    match read {
        Ok(info) => render(&mut out, &info, reader.last_served_dcn(), &asks, &bids),
        Err(ReadError::NotFound { .. }) => {
            out.push_str("not found in shared memory on this machine (is a DCN holding it here? try `ubdcc books`)");
        }
        Err(error) => {
            write!(out, "not served: {error}").ok();
        }
    }
    out
}

fn render(out: &mut String, info: &BookInfo, dcn: Option<&str>, asks: &[Level], bids: &[Level]) {
    let age_ms = ubdcc_gateway::book_answer::age_ms(info);
    writeln!(
        out,
        "{}  update {}  age {age_ms:.1} ms  on {}  resyncs {}",
        info.status,
        info.last_update_id,
        dcn.unwrap_or("?"),
        info.resyncs
    )
    .ok();
    writeln!(out, "{:>18} {:>18}", "PRICE", "QUANTITY").ok();
    for level in asks.iter().rev() {
        writeln!(out, "{:>18} {:>18}  ask", level.price, level.quantity).ok();
    }
    if let (Some(ask), Some(bid)) = (asks.first(), bids.first()) {
        writeln!(
            out,
            "{:>18} {:>18}",
            format!("spread {:.8}", ask.price - bid.price).trim_end_matches('0'),
            ""
        )
        .ok();
    }
    for level in bids {
        writeln!(out, "{:>18} {:>18}  bid", level.price, level.quantity).ok();
    }
}
