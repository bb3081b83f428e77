//! Fixed-point decimal strings as Binance writes them: an integer mantissa and a fixed number of
//! decimals per market (`"0.01000000"`). The simulator never uses floating point for prices.

/// Writes `mantissa / 10^decimals` with exactly `decimals` digits after the point (none and no
/// point when `decimals` is 0).
pub(crate) fn format_decimal(mantissa: u64, decimals: u32) -> String {
    if decimals == 0 {
        return mantissa.to_string();
    }
    let scale = 10u64.pow(decimals);
    format!(
        "{}.{:0width$}",
        mantissa / scale,
        mantissa % scale,
        width = decimals as usize
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_with_fixed_decimals() {
        assert_eq!(format_decimal(1_000_000, 8), "0.01000000");
        assert_eq!(format_decimal(10_000_000_000, 8), "100.00000000");
        assert_eq!(format_decimal(9_999, 2), "99.99");
        assert_eq!(format_decimal(0, 3), "0.000");
        assert_eq!(format_decimal(12, 0), "12");
    }
}
