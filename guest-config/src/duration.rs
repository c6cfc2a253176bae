//! Human durations as the contract writes them: `"250ms"`, `"5s"`, `"2m"`, `"1h"`, `"1d"`,
//! and sums such as `"1m30s"`, at most 365 days. Owns parsing and formatting only. The bound
//! is checked here, where every configured duration is parsed, so no later `Instant + d`
//! can overflow (a `ready_timeout = "9999999999999999h"` used to panic PID 1).

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// A duration read from configuration. Wraps [`Duration`] so serde can parse the string form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Dur(pub Duration);

impl Dur {
    pub const fn from_millis(ms: u64) -> Self {
        Dur(Duration::from_millis(ms))
    }
    pub const fn from_secs(s: u64) -> Self {
        Dur(Duration::from_secs(s))
    }
    pub const fn get(self) -> Duration {
        self.0
    }
}

/// The longest duration accepted (contract §3): longer is surely a typo, and anything
/// bounded by it can be added to an `Instant` without overflow.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

/// Why a duration string was rejected; each variant carries the string as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DurationError {
    /// Empty or only spaces.
    Empty { value: String },
    /// A number without a unit (`"10"`); `number` is that number, for the hint.
    MissingUnit { value: String, number: String },
    /// Not `<number><unit>...`: `reason` says what was found instead.
    Malformed { value: String, reason: &'static str },
    /// Longer than [`MAX_DURATION`] (or too large to compute at all).
    TooLong { value: String },
}

impl DurationError {
    /// The string that was refused.
    pub fn value(&self) -> &str {
        match self {
            DurationError::Empty { value }
            | DurationError::MissingUnit { value, .. }
            | DurationError::Malformed { value, .. }
            | DurationError::TooLong { value } => value,
        }
    }
}

impl fmt::Display for DurationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid duration {:?}: ", self.value())?;
        match self {
            DurationError::Empty { .. } => f.write_str("empty")?,
            DurationError::MissingUnit { number, .. } => {
                write!(f, "no unit; add a unit: \"{number}s\"")?;
            }
            DurationError::Malformed { reason, .. } => f.write_str(reason)?,
            DurationError::TooLong { .. } => {
                return f.write_str("longer than 365 days (\"365d\"), the longest accepted")
            }
        }
        f.write_str(" (write e.g. \"250ms\", \"5s\", \"2m\", \"1h\", \"1d\", \"1m30s\")")
    }
}

impl std::error::Error for DurationError {}

/// Parses `"250ms"`, `"5s"`, `"2m"`, `"1h"`, `"1d"`, `"1m30s"`, up to [`MAX_DURATION`]. A
/// bare number is rejected: a unit is required so that `"5"` cannot silently mean five
/// milliseconds to one reader and five seconds to another.
pub fn parse_duration(s: &str) -> Result<Duration, DurationError> {
    let value = || s.to_string();
    let malformed = |reason| DurationError::Malformed {
        value: value(),
        reason,
    };
    let too_long = || DurationError::TooLong { value: value() };
    let t = s.trim();
    if t.is_empty() {
        return Err(DurationError::Empty { value: value() });
    }
    let mut total = Duration::ZERO;
    let mut rest = t;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(malformed("expected a number"));
        }
        let (number, after) = rest.split_at(digits);
        // Only digits here, so the one way to fail is a number past u64: far too long.
        let n: u64 = number.parse().map_err(|_| too_long())?;
        let unit_len = after.bytes().take_while(u8::is_ascii_alphabetic).count();
        let (unit, after) = after.split_at(unit_len);
        rest = after;
        let millis_per_unit: u64 = match unit {
            "ms" => 1,
            "s" => 1000,
            "m" => 60 * 1000,
            "h" => 3600 * 1000,
            "d" => 24 * 3600 * 1000,
            "" => {
                return Err(DurationError::MissingUnit {
                    value: value(),
                    number: number.to_string(),
                })
            }
            _ => return Err(malformed("unknown unit (use ms, s, m, h or d)")),
        };
        let part = n.checked_mul(millis_per_unit).ok_or_else(too_long)?;
        total = total
            .checked_add(Duration::from_millis(part))
            .filter(|t| *t <= MAX_DURATION)
            .ok_or_else(too_long)?;
    }
    Ok(total)
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse_duration(&s)
            .map(Dur)
            .map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        if ms.is_multiple_of(1000) {
            write!(f, "{}s", ms / 1000)
        } else {
            write!(f, "{ms}ms")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_sums() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("0s").unwrap(), Duration::ZERO);
    }

    #[test]
    fn rejects_bad_input_naming_it() {
        for bad in ["", "5", "s", "5x", "-1s", "1.5s", "99999999999999999999s"] {
            let e = parse_duration(bad).unwrap_err();
            assert_eq!(e.value(), bad);
            assert!(e.to_string().contains(&format!("{bad:?}")), "{e}");
        }
    }

    #[test]
    fn a_bare_number_gets_the_unit_hint() {
        let e = parse_duration("10").unwrap_err();
        assert!(matches!(&e, DurationError::MissingUnit { number, .. } if number == "10"));
        assert!(e.to_string().contains("add a unit: \"10s\""), "{e}");
    }

    #[test]
    fn at_most_365_days() {
        assert_eq!(parse_duration("365d").unwrap(), MAX_DURATION);
        assert_eq!(parse_duration("8760h").unwrap(), MAX_DURATION);
        assert_eq!(parse_duration("364d23h59m59s1000ms").unwrap(), MAX_DURATION);
        for bad in [
            "366d",
            "8761h",
            "365d1ms",
            "9999999999999999h",
            "18446744073709551615ms",
            "18446744073709551616ms",
            "18446744073709551615d",
            "200d200d",
        ] {
            let e = parse_duration(bad).unwrap_err();
            assert_eq!(e, DurationError::TooLong { value: bad.into() }, "{bad}");
            assert!(e.to_string().contains("365 days"), "{e}");
        }
    }
}
