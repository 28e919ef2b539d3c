//! Human-readable durations (`"250ms"`, `"1.5s"`, `"1h30m"`) for configuration.
//!
//! Owns the text form of a [`Duration`] and its serde adapters ([`human`],
//! [`human_opt`]); knows nothing about what a duration is used for. Written
//! here rather than taken from `humantime` because that crate needs `std` and
//! the core is `no_std`; the grammar is small:
//!
//! - one or more `<number><unit>` components, units from largest to smallest,
//!   each at most once, optionally separated by spaces: `1h30m`, `1m 30s`;
//! - a number is decimal digits with an optional fraction (`1.5s`, `0.25ms`);
//!   the result must be a whole number of nanoseconds (no rounding);
//! - units: `h`, `m`, `s`, `ms`, `us` (or `µs`), `ns`;
//! - no sign, no bare numbers (`"100"` is rejected: 100 what?), no `NaN`/`inf`.
//!
//! Formatting writes the **largest unit that holds the value as a whole
//! number**: `1500ms`, `2s`, `90s`, `90m`, `1h`, `0s`. That form is exact (it
//! round-trips through [`parse`] bit for bit), has no fraction to misread, and
//! is trivial to parse in C or JavaScript.

use core::fmt;
use core::str::FromStr;
use core::time::Duration;

use alloc::string::String;

/// Why a string is not a duration. The `Display` text says what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseDurationError {
    /// The string is empty (or only whitespace).
    #[error("empty string; expected a duration such as `250ms`, `1.5s` or `1h30m`")]
    Empty,
    /// The string starts with `-`.
    #[error("negative durations are not allowed")]
    Negative,
    /// A component does not start with a non-negative decimal number (`NaN`, `inf`, `+1s`, `1.s`).
    #[error("expected a non-negative decimal number followed by a unit (h, m, s, ms, us, ns), e.g. `250ms`")]
    InvalidNumber,
    /// A number has no unit after it (`"100"`).
    #[error("missing unit after the number; use one of h, m, s, ms, us, ns (e.g. `100ms`)")]
    MissingUnit,
    /// The unit is not one of `h`, `m`, `s`, `ms`, `us`, `µs`, `ns`.
    #[error("unknown unit `{0}`; use one of h, m, s, ms, us, ns")]
    UnknownUnit(String),
    /// Units repeat or go from smaller to larger (`"30m1h"`, `"1s1s"`).
    #[error("units must appear at most once each, from largest to smallest (e.g. `1h30m`)")]
    UnitOrder,
    /// The value is not a whole number of nanoseconds (`"0.5ns"`).
    #[error("more precise than one nanosecond")]
    TooPrecise,
    /// The value exceeds [`Duration::MAX`].
    #[error("too large to represent (the maximum is about 584 billion years)")]
    Overflow,
}

const NANOS_PER_SEC: u128 = 1_000_000_000;

/// Units from largest to smallest: (suffix, nanoseconds). The index is the rank.
const UNITS: [(&str, u128); 6] = [
    ("h", 3_600 * NANOS_PER_SEC),
    ("m", 60 * NANOS_PER_SEC),
    ("s", NANOS_PER_SEC),
    ("ms", 1_000_000),
    ("us", 1_000),
    ("ns", 1),
];

fn unit_rank(unit: &str) -> Option<usize> {
    let unit = if unit == "µs" { "us" } else { unit };
    UNITS.iter().position(|(name, _)| *name == unit)
}

/// Parses a human-readable duration such as `"250ms"`, `"1.5s"` or `"1h30m"`.
///
/// See the [module docs](self) for the grammar. Never rounds: a value that is
/// not a whole number of nanoseconds is an error.
pub fn parse(text: &str) -> Result<Duration, ParseDurationError> {
    let s = text.trim();
    if s.is_empty() {
        return Err(ParseDurationError::Empty);
    }
    if s.starts_with('-') {
        return Err(ParseDurationError::Negative);
    }
    let bytes = s.as_bytes();
    let mut i = 0;
    let mut total: u128 = 0;
    let mut last_rank: Option<usize> = None;
    while i < bytes.len() {
        // Number: digits, optionally '.' and more digits.
        let int_start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        // `get`, not `&s[..]`, here and below: every index is on a char
        // boundary, and a slice that cannot panic keeps the panic message's
        // formatting (about 5 KB) out of the `.wasm` of relink-wasm.
        let int_digits = s.get(int_start..i).unwrap_or_default();
        let mut frac_digits = "";
        if i < bytes.len() && bytes[i] == b'.' {
            i += 1;
            let frac_start = i;
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
            }
            frac_digits = s.get(frac_start..i).unwrap_or_default();
            if frac_digits.is_empty() {
                return Err(ParseDurationError::InvalidNumber);
            }
        }
        if int_digits.is_empty() {
            return Err(ParseDurationError::InvalidNumber);
        }
        // Unit: the letters that follow (`µ` is a letter too, of two bytes).
        let unit_start = i;
        while let Some(c) = s
            .get(i..)
            .and_then(|rest| rest.chars().next())
            .filter(|c| c.is_alphabetic())
        {
            i += c.len_utf8();
        }
        let unit = s.get(unit_start..i).unwrap_or_default();
        if unit.is_empty() {
            return Err(if i == bytes.len() || bytes[i].is_ascii_whitespace() {
                ParseDurationError::MissingUnit
            } else {
                ParseDurationError::InvalidNumber
            });
        }
        let rank = unit_rank(unit).ok_or_else(|| ParseDurationError::UnknownUnit(unit.into()))?;
        if last_rank.is_some_and(|last| rank <= last) {
            return Err(ParseDurationError::UnitOrder);
        }
        last_rank = Some(rank);
        let component = component_nanos(int_digits, frac_digits, UNITS[rank].1)?;
        total = total
            .checked_add(component)
            .ok_or(ParseDurationError::Overflow)?;
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
    }
    let secs = u64::try_from(total / NANOS_PER_SEC).map_err(|_| ParseDurationError::Overflow)?;
    // `total % NANOS_PER_SEC` is below 10^9 and fits a u32.
    Ok(Duration::new(secs, (total % NANOS_PER_SEC) as u32))
}

/// `int.frac` units of `unit_nanos` each, exactly, in nanoseconds.
fn component_nanos(int: &str, frac: &str, unit_nanos: u128) -> Result<u128, ParseDurationError> {
    let mut value: u128 = 0;
    for d in int.bytes() {
        value = value
            .checked_mul(10)
            .and_then(|v| v.checked_add(u128::from(d - b'0')))
            .ok_or(ParseDurationError::Overflow)?;
    }
    let mut nanos = value
        .checked_mul(unit_nanos)
        .ok_or(ParseDurationError::Overflow)?;
    let frac = frac.trim_end_matches('0');
    if !frac.is_empty() {
        // unit_nanos <= 3.6e12 = 2^13 * 3^2 * 5^11, so a fraction with more than
        // 13 significant decimals can never be a whole number of nanoseconds;
        // below that, numerator and denominator fit a u128 comfortably.
        if frac.len() > 13 {
            return Err(ParseDurationError::TooPrecise);
        }
        let mut numerator: u128 = 0;
        let mut denominator: u128 = 1;
        for d in frac.bytes() {
            numerator = numerator * 10 + u128::from(d - b'0');
            denominator *= 10;
        }
        let scaled = numerator * unit_nanos;
        if scaled % denominator != 0 {
            return Err(ParseDurationError::TooPrecise);
        }
        nanos = nanos
            .checked_add(scaled / denominator)
            .ok_or(ParseDurationError::Overflow)?;
    }
    Ok(nanos)
}

/// A [`Duration`] shown and parsed in the human form of this module.
///
/// `Display` writes the largest unit that holds the value exactly (`1500ms`,
/// `90s`, `0s`); `FromStr` is [`parse`]; serde uses the same text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct HumanDuration(pub Duration);

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let nanos = self.0.as_nanos();
        if nanos == 0 {
            return f.write_str("0s");
        }
        // "ns" divides everything, so the search always succeeds.
        let (unit, size) = UNITS
            .iter()
            .find(|(_, size)| nanos % size == 0)
            .copied()
            .unwrap_or(("ns", 1));
        // Written as u64s: u128's Display is 1.3 KB of relink-wasm's
        // `.wasm`, and only a count of ns past 584 years needs two of them.
        let n = nanos / size;
        match u64::try_from(n) {
            Ok(n) => write!(f, "{n}{unit}"),
            Err(_) => {
                const E19: u128 = 10_000_000_000_000_000_000;
                let (high, low) = ((n / E19) as u64, (n % E19) as u64);
                write!(f, "{high}{low:019}{unit}")
            }
        }
    }
}

impl FromStr for HumanDuration {
    type Err = ParseDurationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse(s).map(HumanDuration)
    }
}

impl From<Duration> for HumanDuration {
    fn from(d: Duration) -> Self {
        HumanDuration(d)
    }
}

impl From<HumanDuration> for Duration {
    fn from(d: HumanDuration) -> Self {
        d.0
    }
}

impl serde::Serialize for HumanDuration {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for HumanDuration {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer
            .deserialize_str(DurationVisitor { field: None })
            .map(HumanDuration)
    }
}

/// Reads a duration string; on error the message names `field` when known.
struct DurationVisitor {
    field: Option<&'static str>,
}

impl serde::de::Visitor<'_> for DurationVisitor {
    type Value = Duration;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a duration string such as \"250ms\", \"1.5s\" or \"1h30m\"")?;
        match self.field {
            Some(field) => write!(f, " for `{field}`"),
            None => Ok(()),
        }
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Duration, E> {
        parse(v).map_err(|e| match self.field {
            Some(field) => E::custom(format_args!(
                "invalid `{field}`: {v:?} is not a duration: {e}"
            )),
            None => E::custom(format_args!("invalid duration {v:?}: {e}")),
        })
    }
}

/// Reads an optional duration; `null`/unit is `None`.
struct OptionalDurationVisitor {
    field: Option<&'static str>,
}

impl<'de> serde::de::Visitor<'de> for OptionalDurationVisitor {
    type Value = Option<Duration>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("null or ")?;
        DurationVisitor { field: self.field }.expecting(f)
    }

    fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(DurationVisitor { field: self.field })
            .map(Some)
    }
}

/// Deserializes a duration string; errors say "invalid `field`: ...".
pub(crate) fn deserialize_field<'de, D: serde::Deserializer<'de>>(
    d: D,
    field: &'static str,
) -> Result<Duration, D::Error> {
    d.deserialize_str(DurationVisitor { field: Some(field) })
}

/// Deserializes `null` or a duration string; errors say "invalid `field`: ...".
pub(crate) fn deserialize_opt_field<'de, D: serde::Deserializer<'de>>(
    d: D,
    field: &'static str,
) -> Result<Option<Duration>, D::Error> {
    d.deserialize_option(OptionalDurationVisitor { field: Some(field) })
}

/// serde adapter for a [`Duration`] field: `#[serde(with = "relink_core::duration::human")]`.
pub mod human {
    use super::{DurationVisitor, HumanDuration};
    use core::time::Duration;

    /// Writes the duration as a string in the form of [`HumanDuration`]'s `Display`.
    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&HumanDuration(*d))
    }

    /// Reads a duration string; the error message says what is wrong with it.
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        d.deserialize_str(DurationVisitor { field: None })
    }
}

/// serde adapter for an `Option<Duration>` field: `null` (or, with
/// `#[serde(default)]`, a missing field) is `None`.
///
/// Formats without `null` (TOML) skip a `None` field when serializing;
/// `#[serde(default)]` on the field reads it back as `None`.
pub mod human_opt {
    use super::{HumanDuration, OptionalDurationVisitor};
    use core::time::Duration;

    /// Writes `Some` as a duration string and `None` as `null`.
    pub fn serialize<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&HumanDuration(*d)),
            None => s.serialize_none(),
        }
    }

    /// Reads `null` as `None` and a duration string as `Some`.
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Duration>, D::Error> {
        d.deserialize_option(OptionalDurationVisitor { field: None })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn parses_the_documented_forms() {
        assert_eq!(parse("250ms"), Ok(ms(250)));
        assert_eq!(parse("1s"), Ok(ms(1000)));
        assert_eq!(parse("1.5s"), Ok(ms(1500)));
        assert_eq!(parse("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse("1m 30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse("100us"), Ok(Duration::from_micros(100)));
        assert_eq!(parse("100µs"), Ok(Duration::from_micros(100)));
        assert_eq!(parse("7ns"), Ok(Duration::from_nanos(7)));
        assert_eq!(parse("0s"), Ok(Duration::ZERO));
        assert_eq!(parse("  5ms "), Ok(ms(5)));
        assert_eq!(parse("0.25ms"), Ok(Duration::from_micros(250)));
        assert_eq!(parse("1.500000000000000000000s"), Ok(ms(1500)));
        assert_eq!(parse("1h1m1s1ms1us1ns"), Ok(Duration::new(3661, 1_001_001)));
    }

    #[test]
    fn rejects_nonsense_with_a_reason() {
        use ParseDurationError::*;
        assert_eq!(parse(""), Err(Empty));
        assert_eq!(parse("   "), Err(Empty));
        assert_eq!(parse("-1s"), Err(Negative));
        assert_eq!(parse("+1s"), Err(InvalidNumber));
        assert_eq!(parse("NaNs"), Err(InvalidNumber));
        assert_eq!(parse("NaN"), Err(InvalidNumber));
        assert_eq!(parse("inf"), Err(InvalidNumber));
        assert_eq!(parse("ms"), Err(InvalidNumber));
        assert_eq!(parse(".5s"), Err(InvalidNumber));
        assert_eq!(parse("1.s"), Err(InvalidNumber));
        assert_eq!(parse("1.2.3s"), Err(InvalidNumber));
        assert_eq!(parse("1s."), Err(InvalidNumber));
        assert_eq!(parse("1,5s"), Err(InvalidNumber));
        assert_eq!(parse("1e3ms"), Err(UnknownUnit("e".into())));
        assert_eq!(parse("100"), Err(MissingUnit));
        assert_eq!(parse("1s 5"), Err(MissingUnit));
        assert_eq!(parse("1 s"), Err(MissingUnit));
        assert_eq!(parse("5parsecs"), Err(UnknownUnit("parsecs".into())));
        assert_eq!(parse("5d"), Err(UnknownUnit("d".into())));
        assert_eq!(parse("30m1h"), Err(UnitOrder));
        assert_eq!(parse("1s1s"), Err(UnitOrder));
        assert_eq!(parse("0.5ns"), Err(TooPrecise));
        assert_eq!(parse("0.00000000000000000001h"), Err(TooPrecise));
        assert_eq!(parse("18446744073709551616s"), Err(Overflow));
        assert_eq!(
            parse("99999999999999999999999999999999999999999h"),
            Err(Overflow)
        );
        assert_eq!(
            parse("-1s").unwrap_err().to_string(),
            "negative durations are not allowed"
        );
    }

    #[test]
    fn parses_the_extremes() {
        assert_eq!(
            parse("18446744073709551615s"),
            Ok(Duration::new(u64::MAX, 0))
        );
        let max = HumanDuration(Duration::MAX).to_string();
        assert_eq!(max, "18446744073709551615999999999ns");
        assert_eq!(parse(&max), Ok(Duration::MAX));
        assert_eq!(
            parse("18446744073709551616000000000ns"),
            Err(ParseDurationError::Overflow)
        );
    }

    #[test]
    fn formats_in_the_largest_exact_unit() {
        let show = |d: Duration| HumanDuration(d).to_string();
        assert_eq!(show(Duration::ZERO), "0s");
        assert_eq!(show(ms(1500)), "1500ms");
        assert_eq!(show(ms(2000)), "2s");
        assert_eq!(show(Duration::from_secs(90)), "90s");
        assert_eq!(show(Duration::from_secs(5400)), "90m");
        assert_eq!(show(Duration::from_secs(7200)), "2h");
        assert_eq!(show(Duration::from_micros(100)), "100us");
        assert_eq!(show(Duration::new(1, 1)), "1000000001ns");
    }

    #[test]
    fn format_round_trips_exactly() {
        let mut rng = crate::rng::SplitMix64::new(99);
        for _ in 0..10_000 {
            let d = Duration::new(
                rng.next_u64() >> rng.range_inclusive(0, 63),
                rng.range_inclusive(0, 999_999_999) as u32,
            );
            for d in [d, Duration::from_millis(d.as_millis() as u64 % 10_000_000)] {
                assert_eq!(parse(&HumanDuration(d).to_string()), Ok(d));
            }
        }
    }
}
