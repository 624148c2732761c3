//! GEN_RNDIS_CONFIG_PARAMETER payload: `{name_offset, name_len, type, value_offset, value_len}` followed by a
//! UTF-16LE name and value, offsets counted from the start of the payload. Linux uses it to set the MAC:
//! name "NetworkAddress", type 2 (string), value 12 hex digits.

use super::msgs::{CONFIG_PARAM_TYPE_STRING, ConfigParameterInfo};
use crate::error::{ProtoError, Result, room};
use crate::wire::{Region, read_prefix, write_at};

const WHAT: &str = "RNDIS_CONFIG_PARAMETER";
/// Parameter name Linux uses to set the MAC address.
pub const NETWORK_ADDRESS: &str = "NetworkAddress";

/// A parsed config parameter with bounded views of its UTF-16LE name and value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConfigParameter<'a> {
    pub param_type: u32,
    pub name: &'a [u8],
    pub value: &'a [u8],
}

impl<'a> ConfigParameter<'a> {
    pub fn parse(info: &'a [u8]) -> Result<Self> {
        let h: ConfigParameterInfo = read_prefix(WHAT, info, 20)?;
        let region = |field, field_at, offset, len| Region {
            what: WHAT,
            field,
            field_at,
            base: 0,
            offset,
            len,
            lo: 20,
            hi: info.len(),
        };
        let n = region("name_offset", 0, h.name_offset, h.name_len).check()?;
        let v = region("value_offset", 12, h.value_offset, h.value_len).check()?;
        Ok(Self {
            param_type: h.param_type,
            name: &info[n],
            value: &info[v],
        })
    }

    /// Whether the name equals `s` (UTF-16LE comparison, no allocation).
    pub fn name_is(&self, s: &str) -> bool {
        utf16_eq(self.name, s)
    }

    /// For a string parameter holding 12 hex digits (NetworkAddress), the MAC address.
    pub fn mac_address(&self) -> Result<[u8; 6]> {
        let bad = |reason| ProtoError::Invalid {
            what: WHAT,
            field: "value",
            offset: 12,
            value: self.value.len() as u64,
            reason,
        };
        if self.param_type != CONFIG_PARAM_TYPE_STRING || self.value.len() != 24 {
            return Err(bad("not a 12-digit string"));
        }
        let mut mac = [0u8; 6];
        for (i, c) in self.value.chunks_exact(2).enumerate() {
            let ch = u16::from_le_bytes([c[0], c[1]]);
            let d = char::from_u32(ch.into())
                .and_then(|c| c.to_digit(16))
                .ok_or(bad("not a hex digit"))?;
            mac[i / 2] = (mac[i / 2] << 4) | d as u8;
        }
        Ok(mac)
    }
}

fn utf16_eq(bytes: &[u8], s: &str) -> bool {
    let mut it = bytes
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]));
    bytes.len().is_multiple_of(2)
        && s.encode_utf16().all(|u| it.next() == Some(u))
        && it.next().is_none()
}

fn put_utf16(out: &mut [u8], at: usize, s: &str) -> usize {
    let mut n = 0;
    for u in s.encode_utf16() {
        out[at + n..at + n + 2].copy_from_slice(&u.to_le_bytes());
        n += 2;
    }
    n
}

/// Build a string parameter (`name` = `value`, both UTF-16LE); returns the payload length.
pub fn emit_string_parameter(out: &mut [u8], name: &str, value: &str) -> Result<usize> {
    let (nl, vl) = (
        name.encode_utf16().count() * 2,
        value.encode_utf16().count() * 2,
    );
    let total = 20 + nl + vl;
    room(WHAT, out.len(), total)?;
    let h = ConfigParameterInfo {
        name_offset: 20,
        name_len: nl as u32,
        param_type: CONFIG_PARAM_TYPE_STRING,
        value_offset: (20 + nl) as u32,
        value_len: vl as u32,
    };
    write_at(WHAT, out, 0, &h)?;
    put_utf16(out, 20, name);
    put_utf16(out, 20 + nl, value);
    Ok(total)
}

/// Build the NetworkAddress parameter for `mac` (12 upper-case hex digits, as Linux); returns the length (68).
pub fn emit_mac_parameter(out: &mut [u8], mac: [u8; 6]) -> Result<usize> {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut digits = [0u8; 12];
    for (i, b) in mac.iter().enumerate() {
        digits[2 * i] = HEX[usize::from(b >> 4)];
        digits[2 * i + 1] = HEX[usize::from(b & 0xF)];
    }
    // The digits are ASCII, so this cannot fail.
    let s = core::str::from_utf8(&digits).unwrap_or_default();
    emit_string_parameter(out, NETWORK_ADDRESS, s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_parameter_layout_and_parse() {
        let mut b = [0xa5u8; 80];
        let n = emit_mac_parameter(&mut b, [0x00, 0x15, 0x5d, 0xab, 0x0c, 0xff]).unwrap();
        assert_eq!(n, 20 + 28 + 24);
        let w = |o: usize| u32::from_le_bytes(b[o..o + 4].try_into().unwrap());
        assert_eq!((w(0), w(4), w(8), w(12), w(16)), (20, 28, 2, 48, 24));
        assert_eq!(&b[20..24], &[b'N', 0, b'e', 0]);
        assert_eq!(&b[48..52], &[b'0', 0, b'0', 0]);
        let p = ConfigParameter::parse(&b[..n]).unwrap();
        assert!(
            p.name_is(NETWORK_ADDRESS)
                && !p.name_is("NetworkAddres")
                && !p.name_is("NetworkAddressX")
        );
        assert_eq!(
            p.mac_address().unwrap(),
            [0x00, 0x15, 0x5d, 0xab, 0x0c, 0xff]
        );
    }

    #[test]
    fn bounds_and_bad_values() {
        let mut b = [0u8; 72];
        let n = emit_mac_parameter(&mut b, [1, 2, 3, 4, 5, 6]).unwrap();
        assert!(matches!(
            ConfigParameter::parse(&b[..n - 1]),
            Err(ProtoError::OutOfRange {
                field: "value_offset",
                ..
            })
        ));
        let mut c = b;
        c[0] = 4; // name inside the fixed part
        assert!(matches!(
            ConfigParameter::parse(&c[..n]),
            Err(ProtoError::OutOfRange {
                field: "name_offset",
                ..
            })
        ));
        c = b;
        c[48] = b'g';
        assert!(
            ConfigParameter::parse(&c[..n])
                .unwrap()
                .mac_address()
                .is_err()
        );
        assert!(ConfigParameter::parse(&b[..10]).is_err());
        assert!(emit_mac_parameter(&mut [0u8; 71], [0; 6]).is_err());
    }
}
