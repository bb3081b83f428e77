//! The Parquet sink of `ubdcc export`: the CSV's columns in a Parquet file (zstd-compressed
//! pages, a row group per [`ROW_GROUP`] rows). Prices and quantities stay the exchange's exact
//! decimal strings (UTF-8 columns), so nothing is lost to floating point; a missing level is
//! null.
//!
//! Built on the `parquet` crate's own writer with its default features off (no Arrow): 31
//! crates, ~37 s of CPU in a release build.

use std::fs::File;
use std::sync::Arc;

use anyhow::Context as _;
use parquet::basic::{Compression, ZstdLevel};
use parquet::data_type::{ByteArray, ByteArrayType, Int64Type};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::parser::parse_message_type;
use ubdcc_shm::Decimal;

use super::{Row, Rows};

/// Rows per row group: large enough for good compression, small enough to keep in memory.
const ROW_GROUP: usize = 65_536;

/// One optional string column being filled: the values present and a definition level per row.
#[derive(Default)]
struct OptionalColumn {
    values: Vec<ByteArray>,
    defined: Vec<i16>,
}

impl OptionalColumn {
    fn push(&mut self, value: Option<String>) {
        match value {
            Some(value) => {
                self.values.push(ByteArray::from(value.into_bytes()));
                self.defined.push(1);
            }
            None => self.defined.push(0),
        }
    }
}

/// A Parquet file.
pub(super) struct ParquetRows {
    writer: Option<SerializedFileWriter<File>>,
    top: usize,
    exchange: Vec<ByteArray>,
    market: Vec<ByteArray>,
    update_id: Vec<i64>,
    received_ns: Vec<i64>,
    /// `bid_price_1, bid_qty_1, …, ask_price_1, …`, in schema order.
    levels: Vec<OptionalColumn>,
}

impl ParquetRows {
    /// Writes to `file` with the schema for `top` levels per side.
    ///
    /// # Errors
    /// The file cannot be written.
    pub(super) fn create(file: File, top: usize) -> anyhow::Result<Self> {
        let mut schema = String::from(
            "message book { required binary exchange (UTF8); required binary market (UTF8); \
             required int64 update_id; required int64 received_ns;",
        );
        for side in ["bid", "ask"] {
            for level in 1..=top {
                schema.push_str(&format!(
                    " optional binary {side}_price_{level} (UTF8); optional binary {side}_qty_{level} (UTF8);"
                ));
            }
        }
        schema.push_str(" }");
        let schema = Arc::new(parse_message_type(&schema).context("the export's schema")?);
        let properties = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::try_new(3)?))
            .build();
        let writer = SerializedFileWriter::new(file, schema, Arc::new(properties))?;
        Ok(Self {
            writer: Some(writer),
            top,
            exchange: Vec::new(),
            market: Vec::new(),
            update_id: Vec::new(),
            received_ns: Vec::new(),
            levels: (0..4 * top).map(|_| OptionalColumn::default()).collect(),
        })
    }

    /// Writes the buffered rows as one row group.
    fn flush_group(&mut self) -> anyhow::Result<()> {
        if self.update_id.is_empty() {
            return Ok(());
        }
        let writer = self.writer.as_mut().context("the file is already closed")?;
        let mut group = writer.next_row_group()?;
        let mut index = 0;
        while let Some(mut column) = group.next_column()? {
            match index {
                0 | 1 => {
                    let values = if index == 0 {
                        &self.exchange
                    } else {
                        &self.market
                    };
                    column
                        .typed::<ByteArrayType>()
                        .write_batch(values, None, None)?;
                }
                2 | 3 => {
                    let values = if index == 2 {
                        &self.update_id
                    } else {
                        &self.received_ns
                    };
                    column
                        .typed::<Int64Type>()
                        .write_batch(values, None, None)?;
                }
                level => {
                    let level = &self.levels[level - 4];
                    let typed = column.typed::<ByteArrayType>();
                    typed.write_batch(&level.values, Some(&level.defined), None)?;
                }
            }
            column.close()?;
            index += 1;
        }
        group.close()?;
        self.exchange.clear();
        self.market.clear();
        self.update_id.clear();
        self.received_ns.clear();
        self.levels
            .iter_mut()
            .for_each(|level| *level = OptionalColumn::default());
        Ok(())
    }

    /// Pushes a side's levels into its columns, null for each missing one up to `top`.
    fn push_side(&mut self, first: usize, levels: &mut dyn Iterator<Item = (Decimal, Decimal)>) {
        for level in 0..self.top {
            let (price, quantity) = match levels.next() {
                Some((price, quantity)) => (Some(price.to_string()), Some(quantity.to_string())),
                None => (None, None),
            };
            self.levels[first + 2 * level].push(price);
            self.levels[first + 2 * level + 1].push(quantity);
        }
    }
}

impl Rows for ParquetRows {
    fn write(
        &mut self,
        row: &Row<'_>,
        bids: &mut dyn Iterator<Item = (Decimal, Decimal)>,
        asks: &mut dyn Iterator<Item = (Decimal, Decimal)>,
    ) -> anyhow::Result<()> {
        self.exchange.push(ByteArray::from(row.exchange.as_str()));
        self.market.push(ByteArray::from(row.market));
        // Update ids and Unix ns fit an i64 until the year 2262.
        self.update_id.push(row.update_id as i64);
        self.received_ns.push(row.received_ns as i64);
        self.push_side(0, bids);
        self.push_side(2 * self.top, asks);
        if self.update_id.len() >= ROW_GROUP {
            self.flush_group()?;
        }
        Ok(())
    }

    fn finish(&mut self) -> anyhow::Result<()> {
        self.flush_group()?;
        if let Some(writer) = self.writer.take() {
            writer.close()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    use ubdcc_engine::Exchange;

    use super::*;

    #[test]
    fn rows_read_back_with_missing_levels_as_null() {
        let path =
            std::env::temp_dir().join(format!("ubdcc-export-{}.parquet", std::process::id()));
        let file = File::create(&path).expect("file");
        let mut rows = ParquetRows::create(file, 2).expect("create");
        let level = |p, q| (Decimal::new(p, -2), Decimal::new(q, -1));
        for update_id in [7, 9] {
            let row = Row {
                exchange: Exchange::BinanceCom,
                market: "BTCUSDT",
                update_id,
                received_ns: 1,
            };
            let mut bids = vec![level(9_999, 12), level(9_998, 3)].into_iter();
            let mut asks = vec![level(10_000, 5)].into_iter();
            rows.write(&row, &mut bids, &mut asks).expect("row");
        }
        rows.finish().expect("finish");
        let reader = SerializedFileReader::new(File::open(&path).expect("open")).expect("parquet");
        assert_eq!(reader.metadata().file_metadata().num_rows(), 2);
        let row = reader
            .get_row_iter(None)
            .expect("rows")
            .next()
            .expect("a row")
            .expect("ok");
        let text = row.to_string();
        assert!(text.contains("update_id: 7"), "{text}");
        assert!(text.contains(r#"bid_price_1: "99.99""#), "{text}");
        assert!(text.contains(r#"bid_qty_2: "0.3""#), "{text}");
        assert!(text.contains("ask_price_2: null"), "{text}");
        std::fs::remove_file(&path).ok();
    }
}
