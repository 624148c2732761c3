//! Reading sysfs attributes: one small text file per value, trimmed, then parsed as a GUID, a
//! decimal or `0x` hex number. Every failure names the file so a broken tree is easy to fix.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use crate::error::UioError;

/// Read a text attribute, trimmed; `Ok(None)` when the file does not exist.
pub(crate) fn read_opt(path: &Path) -> Result<Option<String>, UioError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text.trim().to_owned())),
        Err(err) if err.kind() == ErrorKind::NotFound => Ok(None),
        Err(err) => Err(UioError::io(path, err)),
    }
}

/// Read a required text attribute, trimmed.
pub(crate) fn read_req(path: &Path) -> Result<String, UioError> {
    read_opt(path)?.ok_or_else(|| UioError::Missing {
        path: path.to_owned(),
    })
}

fn parse_err(path: &Path, value: &str, expected: &'static str) -> UioError {
    UioError::Parse {
        path: path.to_owned(),
        value: value.to_owned(),
        expected,
    }
}

/// Parse an unsigned number written in decimal or as `0x…` hex (sysfs uses both).
pub(crate) fn parse_u64(path: &Path, text: &str) -> Result<u64, UioError> {
    let parsed = match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => text.parse::<u64>(),
    };
    parsed.map_err(|_| parse_err(path, text, "a decimal or 0x-hex number"))
}

/// Parse a decimal value of type `T` (`id`, `numa_node`, `monitor_id`, `subchannel_id`).
pub(crate) fn parse_dec<T: std::str::FromStr>(
    path: &Path,
    text: &str,
    expected: &'static str,
) -> Result<T, UioError> {
    text.parse::<T>()
        .map_err(|_| parse_err(path, text, expected))
}

/// Normalise a GUID as sysfs prints it (`{…}` optional, any case) to lower case without braces.
pub(crate) fn parse_guid(path: &Path, text: &str) -> Result<String, UioError> {
    let bare = text
        .strip_prefix('{')
        .and_then(|t| t.strip_suffix('}'))
        .unwrap_or(text);
    normalize_guid(bare)
        .ok_or_else(|| parse_err(path, text, "a GUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)"))
}

/// Lower-case `s` when it is a GUID in 8-4-4-4-12 form (no braces). The `uuid` crate parses it; the length check
/// keeps out the other spellings it also accepts (32 bare hex digits, braces, `urn:uuid:`), which sysfs never prints.
pub(crate) fn normalize_guid(s: &str) -> Option<String> {
    if s.len() != 36 {
        return None;
    }
    uuid::Uuid::try_parse(s)
        .ok()
        .map(|u| u.hyphenated().to_string())
}

/// Sorted numeric suffixes of the entries of `dir` whose names are `prefix` + decimal
/// (`uio0`, `map3`, or plain relids with an empty prefix). A missing directory gives an empty list.
pub(crate) fn numbered_entries(dir: &Path, prefix: &str) -> Result<Vec<(u32, PathBuf)>, UioError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => return Err(UioError::io(dir, err)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| UioError::io(dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(num) = name.strip_prefix(prefix) else {
            continue;
        };
        if num.is_empty() || !num.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        if let Ok(n) = num.parse::<u32>() {
            out.push((n, entry.path()));
        }
    }
    out.sort_by_key(|(n, _)| *n);
    Ok(out)
}

/// File name of the target of a symlink (`driver -> ../../drivers/uio_hv_generic`), if present.
pub(crate) fn link_basename(path: &Path) -> Result<Option<String>, UioError> {
    match std::fs::read_link(path) {
        Ok(target) => Ok(target.file_name().map(|n| n.to_string_lossy().into_owned())),
        Err(err) if err.kind() == ErrorKind::NotFound => Ok(None),
        Err(err) => Err(UioError::io(path, err)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_parse_in_hex_and_decimal() {
        let p = Path::new("x");
        assert_eq!(parse_u64(p, "0x0000000000401000").unwrap(), 0x40_1000);
        assert_eq!(parse_u64(p, "4096").unwrap(), 4096);
        assert!(matches!(parse_u64(p, "0x"), Err(UioError::Parse { .. })));
        assert!(matches!(parse_u64(p, "12k"), Err(UioError::Parse { .. })));
        assert!(matches!(parse_u64(p, "-1"), Err(UioError::Parse { .. })));
    }

    #[test]
    fn guids_accept_braces_and_case() {
        let p = Path::new("class_id");
        let want = "f8615163-df3e-46c5-913f-f2d2f965ed0e";
        assert_eq!(
            parse_guid(p, "{F8615163-DF3E-46C5-913F-F2D2F965ED0E}").unwrap(),
            want
        );
        assert_eq!(parse_guid(p, want).unwrap(), want);
        for bad in [
            "{f8615163-df3e-46c5-913f-f2d2f965ed0e",
            "f8615163df3e46c5913ff2d2f965ed0e",
            "g8615163-df3e-46c5-913f-f2d2f965ed0e",
            "",
        ] {
            let err = parse_guid(p, bad).unwrap_err();
            assert!(err.to_string().starts_with("class_id:"), "{err}");
        }
    }
}
