//! Device arguments in DPDK's `key=value,key=value` syntax (`latency=50,rx_copybreak=256,...`).
//!
//! Values follow C `strtoul(.., 0)`: `0x` prefix is hex, a leading `0` is octal, otherwise decimal.
//! Unlike DPDK (which range-checks nothing) every value is bounded here and a bad one is an error
//! naming the key and the value.

use crate::error::{Error, Result};

/// Largest latency accepted, exclusive: the monitor-page slot is a u16 in 100 ns units.
pub const LATENCY_LIMIT_US: u64 = 6553;
/// Largest copybreak accepted.
pub const COPYBREAK_MAX: u64 = 65536;

/// Parsed device arguments with DPDK's defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Devargs {
    /// Host scan latency in µs written to each channel's monitor slot (default 50).
    pub latency_us: u32,
    /// Rx frames longer than this become zero-copy views when enabled (default 256).
    pub rx_copybreak: u32,
    /// Tx frames up to this size are copied into send sections (default 512; 0 = never).
    pub tx_copybreak: u32,
    /// Enable zero-copy rx views into the receive buffer (default off).
    pub rx_extmbuf_enable: bool,
    /// Accepted for DPDK compatibility (the bus reads it); allocations are not NUMA-placed here.
    pub numa_aware: bool,
}

impl Default for Devargs {
    fn default() -> Self {
        Devargs {
            latency_us: 50,
            rx_copybreak: 256,
            tx_copybreak: 512,
            rx_extmbuf_enable: false,
            numa_aware: false,
        }
    }
}

/// Most characters of the input an error quotes (key and value together; each is clipped to half, with `…`).
pub const QUOTE_MAX: usize = 64;

/// Why a devargs item was refused; `Display` is the wording both parsers (this one and `src/devargs.ts`) use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DevargKind {
    /// The key is not one of [`KEYS`].
    UnknownKey,
    /// `key=` or a bare `key`.
    EmptyValue,
    /// Not C `strtoul(.., 0)` syntax, or past 2^64.
    NotANumber,
    /// `latency` at or above 6553 µs.
    LatencyRange,
    /// A copybreak above 65536.
    CopybreakRange,
    /// A flag other than 0 or 1.
    NotAFlag,
}

impl DevargKind {
    /// The stable name of the kind (as in `crates/netvsc/tests/devargs_cases.json`).
    pub fn name(self) -> &'static str {
        match self {
            DevargKind::UnknownKey => "unknown_key",
            DevargKind::EmptyValue => "empty_value",
            DevargKind::NotANumber => "not_a_number",
            DevargKind::LatencyRange => "latency_range",
            DevargKind::CopybreakRange => "copybreak_range",
            DevargKind::NotAFlag => "not_a_flag",
        }
    }
}

impl std::fmt::Display for DevargKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DevargKind::UnknownKey => "unknown key",
            DevargKind::EmptyValue => "empty value",
            DevargKind::NotANumber => "not a number",
            DevargKind::LatencyRange => "latency must be below 6553 us",
            DevargKind::CopybreakRange => "copybreak must be at most 65536",
            DevargKind::NotAFlag => "flag must be 0 or 1",
        })
    }
}

/// The keys, in DPDK's spelling.
pub const KEYS: [&str; 5] = [
    "latency",
    "rx_copybreak",
    "tx_copybreak",
    "rx_extmbuf_enable",
    "numa_aware",
];

/// The whitespace trimmed around items, keys and values: C `isspace` in the "C" locale (space, `\t`, `\n`, `\v`,
/// `\f`, `\r`) and nothing else, so no Unicode space (U+00A0, U+0085, U+FEFF, ...) is ever dropped.
pub fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\u{0B}' | '\u{0C}' | '\r')
}

fn trim(s: &str) -> &str {
    s.trim_matches(is_space)
}

/// `s` as an error quotes it: at most `max` characters, the last replaced by `…` when clipped.
pub fn clip(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        None => s.to_string(),
        Some(_) => {
            let end = s.char_indices().nth(max - 1).map_or(s.len(), |(i, _)| i);
            format!("{}…", &s[..end])
        }
    }
}

impl Devargs {
    /// Parse a devargs string; the empty string gives the defaults. Items are split at `,`, blank ones skipped;
    /// key and value are split at the first `=` and trimmed of [`is_space`] characters.
    pub fn parse(text: &str) -> Result<Devargs> {
        let mut args = Devargs::default();
        for item in text.split(',').filter(|s| !trim(s).is_empty()) {
            let (key, value) = match item.split_once('=') {
                Some((k, v)) => (trim(k), trim(v)),
                None => (trim(item), ""),
            };
            let err = |kind| Error::Devarg {
                key: clip(key, QUOTE_MAX / 2),
                value: clip(value, QUOTE_MAX / 2),
                kind,
            };
            if !KEYS.contains(&key) {
                return Err(err(DevargKind::UnknownKey));
            }
            if value.is_empty() {
                return Err(err(DevargKind::EmptyValue));
            }
            let n = strtoul(value).ok_or_else(|| err(DevargKind::NotANumber))?;
            match key {
                "latency" if n >= LATENCY_LIMIT_US => return Err(err(DevargKind::LatencyRange)),
                "latency" => args.latency_us = n as u32,
                "rx_copybreak" | "tx_copybreak" if n > COPYBREAK_MAX => {
                    return Err(err(DevargKind::CopybreakRange));
                }
                "rx_copybreak" => args.rx_copybreak = n as u32,
                "tx_copybreak" => args.tx_copybreak = n as u32,
                _ if n > 1 => return Err(err(DevargKind::NotAFlag)),
                "rx_extmbuf_enable" => args.rx_extmbuf_enable = n == 1,
                _ => args.numa_aware = n == 1,
            }
        }
        Ok(args)
    }

    /// Latency in the monitor page's unit (100 ns).
    pub fn latency_100ns(&self) -> u16 {
        // Bounded by LATENCY_LIMIT_US: 6552 µs = 65520 units fits u16.
        (u64::from(self.latency_us) * 10).min(u64::from(u16::MAX)) as u16
    }
}

/// `strtoul(s, &end, 0)` with `*end == 0` required: hex (`0x`), octal (leading `0`) or decimal.
/// No sign, no surrounding junk; `None` on overflow or any stray character.
pub fn strtoul(s: &str) -> Option<u64> {
    let (digits, radix) = if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        (h, 16)
    } else if s.len() > 1 && s.starts_with('0') {
        (&s[1..], 8)
    } else {
        (s, 10)
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    u64::from_str_radix(digits, radix).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_dpdk() {
        let d = Devargs::parse("").unwrap();
        assert_eq!(d, Devargs::default());
        assert_eq!(
            (d.latency_us, d.rx_copybreak, d.tx_copybreak),
            (50, 256, 512)
        );
        assert!(!d.rx_extmbuf_enable);
        assert_eq!(d.latency_100ns(), 500);
    }

    #[test]
    fn full_string_and_bases() {
        let d = Devargs::parse("latency=0x10,rx_copybreak=0400,tx_copybreak=0,rx_extmbuf_enable=1")
            .unwrap();
        assert_eq!(d.latency_us, 16);
        assert_eq!(d.rx_copybreak, 256);
        assert_eq!(d.tx_copybreak, 0);
        assert!(d.rx_extmbuf_enable);
        assert_eq!(
            Devargs::parse("latency=6552").unwrap().latency_100ns(),
            65520
        );
        assert_eq!(
            Devargs::parse("tx_copybreak=65536").unwrap().tx_copybreak,
            65536
        );
    }

    #[test]
    fn errors_name_key_and_value() {
        let cases = [
            ("bogus=1", "bogus", "1", "unknown key"),
            ("latency=", "latency", "", "empty value"),
            ("latency", "latency", "", "empty value"),
            ("latency=12ms", "latency", "12ms", "not a number"),
            ("latency=-1", "latency", "-1", "not a number"),
            ("latency=09", "latency", "09", "not a number"),
            (
                "latency=6553",
                "latency",
                "6553",
                "latency must be below 6553 us",
            ),
            (
                "rx_copybreak=65537",
                "rx_copybreak",
                "65537",
                "copybreak must be at most 65536",
            ),
            (
                "tx_copybreak=0x10001",
                "tx_copybreak",
                "0x10001",
                "copybreak must be at most 65536",
            ),
            (
                "rx_extmbuf_enable=2",
                "rx_extmbuf_enable",
                "2",
                "flag must be 0 or 1",
            ),
        ];
        for (text, k, v, r) in cases {
            match Devargs::parse(text) {
                Err(Error::Devarg { key, value, kind }) => {
                    let reason = kind.to_string();
                    assert_eq!(
                        (key.as_str(), value.as_str(), reason.as_str()),
                        (k, v, r),
                        "{text}"
                    );
                    let msg = Devargs::parse(text).unwrap_err().to_string();
                    assert!(msg.contains(k) && msg.contains(v), "{msg}");
                }
                other => panic!("{text}: {other:?}"),
            }
        }
    }

    #[test]
    fn strtoul_semantics() {
        assert_eq!(strtoul("0"), Some(0));
        assert_eq!(strtoul("010"), Some(8));
        assert_eq!(strtoul("0x1F"), Some(31));
        assert_eq!(strtoul("0x"), None);
        assert_eq!(strtoul("99999999999999999999999"), None);
        assert_eq!(strtoul(" 1"), None);
    }

    #[test]
    fn only_c_whitespace_is_trimmed() {
        assert_eq!(
            Devargs::parse(" \t\u{0B}latency = 7\r\n\u{0C}")
                .unwrap()
                .latency_us,
            7
        );
        for odd in ['\u{FEFF}', '\u{85}', '\u{A0}', '\u{2028}', '\u{3000}'] {
            let e = Devargs::parse(&format!("{odd}latency=1")).unwrap_err();
            assert!(
                matches!(
                    e,
                    Error::Devarg {
                        kind: DevargKind::UnknownKey,
                        ..
                    }
                ),
                "{odd:?}: {e}"
            );
            let e = Devargs::parse(&format!("latency=1{odd}")).unwrap_err();
            assert!(
                matches!(
                    e,
                    Error::Devarg {
                        kind: DevargKind::NotANumber,
                        ..
                    }
                ),
                "{odd:?}: {e}"
            );
            assert!(
                Devargs::parse(&format!("{odd},latency=1")).is_err(),
                "{odd:?} is an item"
            );
        }
    }

    #[test]
    fn errors_quote_at_most_64_characters() {
        let long = "x".repeat(10_000);
        let msg = Devargs::parse(&format!("{long}={long}"))
            .unwrap_err()
            .to_string();
        assert!(msg.chars().count() < 120, "{msg}");
        let want = format!(
            "devargs: key `{0}…` value `{0}…`: unknown key",
            "x".repeat(31)
        );
        assert_eq!(msg, want);
        let msg = Devargs::parse(&format!("latency={}", "é".repeat(40)))
            .unwrap_err()
            .to_string();
        assert_eq!(
            msg,
            format!(
                "devargs: key `latency` value `{}…`: not a number",
                "é".repeat(31)
            )
        );
        assert_eq!(
            clip(&"y".repeat(32), 32),
            "y".repeat(32),
            "32 characters fit"
        );
    }
}
