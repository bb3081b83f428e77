//! The CSV sink of `ubdcc export`: a header, then one line per row, to a file or stdout.

use std::fmt::Write as _;
use std::fs::File;
use std::io::{self, BufWriter, Write};

use ubdcc_shm::Decimal;

use super::{Row, Rows};

/// CSV text.
pub(super) struct CsvRows {
    out: BufWriter<Box<dyn Write>>,
    top: usize,
    /// Reused per row.
    line: String,
}

impl CsvRows {
    /// Writes to `file` (stdout without one), starting with the header.
    ///
    /// # Errors
    /// The header cannot be written.
    pub(super) fn create(file: Option<File>, top: usize) -> anyhow::Result<Self> {
        let out: Box<dyn Write> = match file {
            Some(file) => Box::new(file),
            None => Box::new(io::stdout().lock()),
        };
        let mut rows = Self {
            out: BufWriter::new(out),
            top,
            line: String::new(),
        };
        let mut header = String::from("exchange,market,update_id,received_ns");
        for side in ["bid", "ask"] {
            for level in 1..=top {
                // Writing into a String cannot fail.
                write!(header, ",{side}_price_{level},{side}_qty_{level}").ok();
            }
        }
        writeln!(rows.out, "{header}")?;
        Ok(rows)
    }

    /// Appends a side's levels, `,,` for each missing one up to `top`.
    fn push_side(&mut self, levels: &mut dyn Iterator<Item = (Decimal, Decimal)>) {
        for _ in 0..self.top {
            match levels.next() {
                Some((price, quantity)) => write!(self.line, ",{price},{quantity}").ok(),
                None => write!(self.line, ",,").ok(),
            };
        }
    }
}

impl Rows for CsvRows {
    fn write(
        &mut self,
        row: &Row<'_>,
        bids: &mut dyn Iterator<Item = (Decimal, Decimal)>,
        asks: &mut dyn Iterator<Item = (Decimal, Decimal)>,
    ) -> anyhow::Result<()> {
        self.line.clear();
        let Row {
            exchange,
            market,
            update_id,
            received_ns,
        } = row;
        write!(self.line, "{exchange},{market},{update_id},{received_ns}").ok();
        self.push_side(bids);
        self.push_side(asks);
        writeln!(self.out, "{}", self.line)?;
        Ok(())
    }

    fn finish(&mut self) -> anyhow::Result<()> {
        self.out.flush()?;
        Ok(())
    }
}
