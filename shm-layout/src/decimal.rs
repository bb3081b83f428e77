//! Exact decimals as stored in shared memory (an unsigned integer mantissa and a base-10 exponent),
//! and their conversion to `f64` at the reader's edge.
//!
//! Binance sends prices and quantities as decimal strings ("0.10000000"). The original served them
//! as Python `float("0.10000000")`, so the conversion must give exactly the double that parsing the
//! decimal string gives, i.e. the correctly rounded value. For a mantissa below 2^53 and a negative
//! exponent down to -22, `m as f64 / 10^k` is that value: both operands are exact doubles and IEEE
//! division rounds once. Multiplying by `1e-8` would round twice and is wrong for some inputs. Any
//! other input takes a slower, exact path through the standard library's correctly rounded parser.

use std::fmt::Write as _;

/// Exact powers of ten that are representable as `f64` (10^22 is the largest).
const EXACT_POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

/// Mantissas below this are exact in an `f64`.
const EXACT_MANTISSA_LIMIT: u64 = 1 << 53;

/// An exact, non-negative decimal: `mantissa × 10^exponent`.
///
/// ```
/// use ubdcc_shm::Decimal;
/// let price = Decimal::new(10_000_000, -8);
/// assert_eq!(price.to_f64(), 0.1);
/// assert_eq!(price.to_string(), "0.10000000");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Decimal {
    mantissa: u64,
    exponent: i8,
}

impl Decimal {
    /// A decimal with the given mantissa and base-10 exponent.
    pub const fn new(mantissa: u64, exponent: i8) -> Self {
        Self { mantissa, exponent }
    }

    /// The integer mantissa.
    pub const fn mantissa(self) -> u64 {
        self.mantissa
    }

    /// The base-10 exponent.
    pub const fn exponent(self) -> i8 {
        self.exponent
    }

    /// The nearest `f64`, identical to parsing this decimal's string form (`float("…")`).
    #[inline]
    pub fn to_f64(self) -> f64 {
        mantissa_to_f64(self.mantissa, self.exponent)
    }

    /// `true` for any representation of zero (`"0"`, `"0.00000000"`).
    pub const fn is_zero(self) -> bool {
        self.mantissa == 0
    }

    /// The same value with exponent `exponent`, if that is exact and fits: `None` when it would
    /// drop non-zero digits or overflow the mantissa.
    ///
    /// ```
    /// use ubdcc_shm::Decimal;
    /// assert_eq!(Decimal::new(15, -1).rescale(-3), Some(Decimal::new(1500, -3)));
    /// assert_eq!(Decimal::new(1500, -3).rescale(-1), Some(Decimal::new(15, -1)));
    /// assert_eq!(Decimal::new(1501, -3).rescale(-1), None);
    /// ```
    pub fn rescale(self, exponent: i8) -> Option<Self> {
        let shift = i32::from(self.exponent) - i32::from(exponent);
        let factor = 10u64.checked_pow(shift.unsigned_abs())?;
        let mantissa = if shift >= 0 {
            self.mantissa.checked_mul(factor)?
        } else if self.mantissa % factor == 0 {
            self.mantissa / factor
        } else {
            return None;
        };
        Some(Self { mantissa, exponent })
    }

    /// Parses a plain decimal string as Binance sends it (`"0.10000000"`, `"42"`, `"7."`): ASCII
    /// digits with at most one `.`, no sign, no exponent, at most 19 significant digits before
    /// the mantissa overflows. The exponent is minus the number of fraction digits, so the value
    /// is exact and `to_string` gives the same text back for canonical input.
    ///
    /// # Errors
    /// [`ParseDecimalError`] naming what is wrong with the text.
    ///
    /// ```
    /// use ubdcc_shm::Decimal;
    /// let d = Decimal::parse("0.10000000")?;
    /// assert_eq!((d.mantissa(), d.exponent()), (10_000_000, -8));
    /// assert!(Decimal::parse("-1").is_err());
    /// # Ok::<(), ubdcc_shm::ParseDecimalError>(())
    /// ```
    pub fn parse(text: &str) -> Result<Self, ParseDecimalError> {
        Self::parse_bytes(text.as_bytes())
    }

    /// [`Decimal::parse`] on bytes.
    ///
    /// # Errors
    /// As [`Decimal::parse`].
    #[inline]
    pub fn parse_bytes(text: &[u8]) -> Result<Self, ParseDecimalError> {
        if text.is_empty() {
            return Err(ParseDecimalError::Empty);
        }
        let mut mantissa: u64 = 0;
        let mut fraction_digits: i32 = 0;
        let mut seen_point = false;
        let mut seen_digit = false;
        for &byte in text {
            match byte {
                b'0'..=b'9' => {
                    seen_digit = true;
                    mantissa = mantissa
                        .checked_mul(10)
                        .and_then(|m| m.checked_add(u64::from(byte - b'0')))
                        .ok_or(ParseDecimalError::TooManyDigits)?;
                    if seen_point {
                        fraction_digits += 1;
                    }
                }
                b'.' if !seen_point => seen_point = true,
                other => return Err(ParseDecimalError::InvalidByte(other)),
            }
        }
        if !seen_digit {
            return Err(ParseDecimalError::NoDigits);
        }
        let exponent =
            i8::try_from(-fraction_digits).map_err(|_| ParseDecimalError::TooManyDigits)?;
        Ok(Self { mantissa, exponent })
    }
}

/// A decimal string could not be parsed exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ParseDecimalError {
    /// The text was empty.
    #[error("empty decimal")]
    Empty,
    /// The text had a `.` but no digit.
    #[error("decimal without digits")]
    NoDigits,
    /// A byte other than a digit or a single `.`.
    #[error("invalid byte {0:#04x} in decimal")]
    InvalidByte(u8),
    /// More significant digits than a 64-bit mantissa holds.
    #[error("decimal has too many digits for an exact 64-bit mantissa")]
    TooManyDigits,
}

impl std::str::FromStr for Decimal {
    type Err = ParseDecimalError;

    fn from_str(text: &str) -> Result<Self, ParseDecimalError> {
        Self::parse(text)
    }
}

impl PartialOrd for Decimal {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Decimal {
    /// Numeric order, exact across exponents (`1.50` equals `1.5` in value but not as a
    /// representation, so ties are broken by exponent to stay consistent with `Eq`).
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        let exponent = self.exponent.min(other.exponent);
        let widen = |d: &Self| {
            u128::from(d.mantissa) * 10u128.pow(u32::from(d.exponent.abs_diff(exponent)))
        };
        widen(self)
            .cmp(&widen(other))
            .then(self.exponent.cmp(&other.exponent))
    }
}

/// `mantissa × 10^exponent` correctly rounded to `f64`.
#[inline]
pub(crate) fn mantissa_to_f64(mantissa: u64, exponent: i8) -> f64 {
    let scale = usize::from(exponent.unsigned_abs());
    if mantissa < EXACT_MANTISSA_LIMIT && scale < EXACT_POW10.len() {
        let m = mantissa as f64;
        if exponent <= 0 {
            return m / EXACT_POW10[scale];
        }
        // Both factors are exact, so the product is exact while it stays below 2^53.
        let product = m * EXACT_POW10[scale];
        if product < EXACT_MANTISSA_LIMIT as f64 {
            return product;
        }
    }
    parse_exact(mantissa, exponent)
}

/// The slow, always-correct path: format the decimal and let the standard library round it.
#[cold]
fn parse_exact(mantissa: u64, exponent: i8) -> f64 {
    format!("{mantissa}e{exponent}").parse().unwrap_or(f64::NAN)
}

impl std::fmt::Display for Decimal {
    /// Formats like Binance: all `-exponent` fraction digits, no exponent notation.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.exponent >= 0 {
            write!(f, "{}", self.mantissa)?;
            for _ in 0..self.exponent {
                f.write_char('0')?;
            }
            return Ok(());
        }
        let scale = u32::from(self.exponent.unsigned_abs());
        let digits = self.mantissa.to_string();
        let scale = scale as usize;
        if digits.len() > scale {
            let (int, frac) = digits.split_at(digits.len() - scale);
            write!(f, "{int}.{frac}")
        } else {
            write!(f, "0.{}{digits}", "0".repeat(scale - digits.len()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn binance_style_values_convert_like_float_parsing() {
        assert_eq!(
            Decimal::new(10_000_000, -8).to_f64(),
            "0.10000000".parse::<f64>().unwrap()
        );
        assert_eq!(Decimal::new(9_999_000_000, -8).to_f64(), 99.99);
        assert_eq!(Decimal::new(0, -8).to_f64(), 0.0);
        assert_eq!(Decimal::new(12, 3).to_f64(), 12000.0);
    }

    #[test]
    fn display_keeps_every_fraction_digit() {
        assert_eq!(Decimal::new(10_000_000, -8).to_string(), "0.10000000");
        assert_eq!(Decimal::new(12_345, -2).to_string(), "123.45");
        assert_eq!(Decimal::new(5, -3).to_string(), "0.005");
        assert_eq!(Decimal::new(7, 2).to_string(), "700");
    }

    #[test]
    fn huge_mantissas_take_the_exact_path() {
        let m = (1u64 << 53) + 1;
        let expected: f64 = format!("{m}e-8").parse().unwrap();
        assert_eq!(Decimal::new(m, -8).to_f64(), expected);
        assert_eq!(
            Decimal::new(u64::MAX, -30).to_f64(),
            format!("{}e-30", u64::MAX).parse::<f64>().unwrap()
        );
    }

    #[test]
    fn binance_strings_parse_exactly() {
        assert_eq!(
            Decimal::parse("0.10000000"),
            Ok(Decimal::new(10_000_000, -8))
        );
        assert_eq!(Decimal::parse("99.99"), Ok(Decimal::new(9999, -2)));
        assert_eq!(Decimal::parse("100"), Ok(Decimal::new(100, 0)));
        assert_eq!(Decimal::parse(".5"), Ok(Decimal::new(5, -1)));
        assert_eq!(Decimal::parse("7."), Ok(Decimal::new(7, 0)));
        assert!(Decimal::parse("0.00000000").unwrap().is_zero());
    }

    #[test]
    fn malformed_decimals_are_errors_not_guesses() {
        assert_eq!(Decimal::parse(""), Err(ParseDecimalError::Empty));
        assert_eq!(Decimal::parse("."), Err(ParseDecimalError::NoDigits));
        assert_eq!(
            Decimal::parse("-1"),
            Err(ParseDecimalError::InvalidByte(b'-'))
        );
        assert_eq!(
            Decimal::parse("1.2.3"),
            Err(ParseDecimalError::InvalidByte(b'.'))
        );
        assert_eq!(
            Decimal::parse("1e5"),
            Err(ParseDecimalError::InvalidByte(b'e'))
        );
        assert_eq!(
            Decimal::parse("99999999999999999999"),
            Err(ParseDecimalError::TooManyDigits)
        );
    }

    #[test]
    fn order_is_numeric_across_digit_boundaries_and_exponents() {
        let d = |s: &str| Decimal::parse(s).unwrap();
        assert!(d("99.99") < d("100.00"));
        assert!(d("9.5") < d("10.00"));
        assert!(d("0.001") < d("0.01"));
        assert!(d("1.5") < d("1.51"));
        assert_eq!(d("2.000").cmp(&d("2.000")), std::cmp::Ordering::Equal);
    }

    proptest! {
        #[test]
        fn parsing_display_round_trips(m in any::<u64>(), e in -18i8..=0) {
            let d = Decimal::new(m, e);
            prop_assert_eq!(Decimal::parse(&d.to_string()), Ok(d));
        }

        #[test]
        fn rescale_keeps_the_value(m in 0u64..1_000_000_000_000, e in -8i8..=0, to in -12i8..=0) {
            let d = Decimal::new(m, e);
            if let Some(r) = d.rescale(to) {
                prop_assert_eq!(r.to_f64(), d.to_f64());
                prop_assert_eq!(r.rescale(e), Some(d));
            }
        }

        #[test]
        fn conversion_equals_parsing_the_decimal_string(m in any::<u64>(), e in -22i8..=22) {
            let d = Decimal::new(m, e);
            let parsed: f64 = d.to_string().parse().unwrap();
            prop_assert_eq!(d.to_f64().to_bits(), parsed.to_bits(), "{}", d);
        }

        #[test]
        fn small_mantissas_with_binance_scales_are_exact(m in 0u64..(1 << 53), e in -8i8..=0) {
            let d = Decimal::new(m, e);
            let parsed: f64 = d.to_string().parse().unwrap();
            prop_assert_eq!(d.to_f64().to_bits(), parsed.to_bits());
        }
    }
}
