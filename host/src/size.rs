//! Byte sizes as people write them in flags and config files: `1048576`,
//! `64MiB`, `1 GiB`, `512k`.
//!
//! Binary units (`KiB`, `MiB`, `GiB`, `TiB`, and the one-letter `k`, `m`,
//! `g`, `t` that Docker and `ulimit` users type) are powers of 1024; SI units
//! (`KB`, `MB`, `GB`, `TB`) are powers of 1000, as their names say. Units are
//! case-insensitive; a bare number is bytes.

use std::fmt;
use std::str::FromStr;

/// A number of bytes, parsed from text with an optional unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

/// Why a size was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid size {text:?}: {why} (write bytes, or a whole number with a unit: \
     KiB, MiB, GiB, TiB, or KB, MB, GB, TB; e.g. 64MiB)"
)]
pub struct ByteSizeError {
    text: String,
    why: &'static str,
}

const UNITS: [(&str, u64); 14] = [
    ("b", 1),
    ("k", 1 << 10),
    ("kib", 1 << 10),
    ("m", 1 << 20),
    ("mib", 1 << 20),
    ("g", 1 << 30),
    ("gib", 1 << 30),
    ("t", 1 << 40),
    ("tib", 1 << 40),
    ("kb", 1_000),
    ("mb", 1_000_000),
    ("gb", 1_000_000_000),
    ("tb", 1_000_000_000_000),
    ("", 1),
];

impl FromStr for ByteSize {
    type Err = ByteSizeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let error = |why| ByteSizeError {
            text: s.to_string(),
            why,
        };
        let text = s.trim();
        let digits = text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len());
        if digits == 0 {
            return Err(error("it does not start with a number"));
        }
        let number: u64 = text[..digits]
            .parse()
            .map_err(|_| error("the number is too large"))?;
        let unit = text[digits..].trim().to_ascii_lowercase();
        let (_, scale) = UNITS
            .iter()
            .find(|(name, _)| *name == unit)
            .ok_or_else(|| error("unknown unit"))?;
        number
            .checked_mul(*scale)
            .map(ByteSize)
            .ok_or_else(|| error("the size is too large"))
    }
}

impl fmt::Display for ByteSize {
    /// The largest binary unit that divides the size exactly, so that a size
    /// prints as it is usually written (`64MiB`, not `67108864`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (unit, scale) in [("TiB", 1u64 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20)] {
            if self.0 >= scale && self.0.is_multiple_of(scale) {
                return write!(f, "{}{unit}", self.0 / scale);
            }
        }
        write!(f, "{}", self.0)
    }
}

impl<'de> serde::Deserialize<'de> for ByteSize {
    /// A string with a unit (`"64MiB"`) or a plain number of bytes.
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(serde::Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Bytes(u64),
            Text(String),
        }
        match Raw::deserialize(deserializer)? {
            Raw::Bytes(n) => Ok(ByteSize(n)),
            Raw::Text(text) => text.parse().map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn size(s: &str) -> Result<u64, ByteSizeError> {
        s.parse::<ByteSize>().map(|b| b.0)
    }

    #[test]
    fn sizes_parse_with_binary_and_si_units() {
        assert_eq!(size("4096"), Ok(4096));
        assert_eq!(size("64MiB"), Ok(64 << 20));
        assert_eq!(size("64 mib"), Ok(64 << 20));
        assert_eq!(size("1GiB"), Ok(1 << 30));
        assert_eq!(size("512k"), Ok(512 << 10));
        assert_eq!(size("2g"), Ok(2 << 30));
        assert_eq!(size("1TiB"), Ok(1 << 40));
        assert_eq!(size("100MB"), Ok(100_000_000));
        assert_eq!(size("7B"), Ok(7));
    }

    #[test]
    fn bad_sizes_are_refused_with_the_reason() {
        for (text, why) in [
            ("", "does not start with a number"),
            ("MiB", "does not start with a number"),
            ("-1MiB", "does not start with a number"),
            ("1.5GiB", "unknown unit"),
            ("64 furlongs", "unknown unit"),
            ("99999999999999999999", "too large"),
            ("17000000TiB", "too large"),
        ] {
            let e = size(text).unwrap_err().to_string();
            assert!(e.contains(why), "{text:?}: {e}");
            assert!(e.contains("64MiB"), "the message shows an example: {e}");
        }
    }

    #[test]
    fn sizes_print_in_the_largest_exact_unit() {
        assert_eq!(ByteSize(64 << 20).to_string(), "64MiB");
        assert_eq!(ByteSize(1 << 30).to_string(), "1GiB");
        assert_eq!(ByteSize(1000).to_string(), "1000");
    }
}
