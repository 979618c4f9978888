//! TraceLogging's self-describing format, computed at compile time: the provider GUID from the
//! provider name, the provider metadata blob and the one event's metadata.
//!
//! Facts and sources: docs/notes/etw-log.md §2 (name hashing) and §3 (metadata layout).

/// A GUID in its in-memory layout (`GUID`, guiddef.h).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct Guid {
    /// First 4 bytes, little-endian in memory.
    pub data1: u32,
    /// Next 2 bytes.
    pub data2: u16,
    /// Next 2 bytes.
    pub data3: u16,
    /// Last 8 bytes, in order.
    pub data4: [u8; 8],
}

/// The namespace TraceLogging hashes provider names under: `482C2DB2-C390-47C8-87F8-1A15BFC130FB`,
/// as big-endian bytes (docs/notes/etw-log.md §2).
const NAMESPACE: [u8; 16] = [
    0x48, 0x2C, 0x2D, 0xB2, 0xC3, 0x90, 0x47, 0xC8, 0x87, 0xF8, 0x1A, 0x15, 0xBF, 0xC1, 0x30, 0xFB,
];

/// Longest provider name accepted (bytes). The hash input is built in a fixed buffer.
pub const MAX_NAME: usize = 120;

/// The provider GUID TraceLogging derives from `name` (what `TraceLoggingOptionGroup`-less
/// providers, `tracelog -guid *Name` and .NET's `EventSource` compute): SHA-1 over the namespace
/// and the upper-cased name in UTF-16BE, first 16 bytes, version nibble 5.
///
/// # Panics
/// At compile time, if the name is empty, longer than [`MAX_NAME`] or not ASCII (the upper-casing
/// here is ASCII's; the documented one is invariant-culture Unicode).
#[must_use]
pub const fn guid_from_name(name: &str) -> Guid {
    let n = name.as_bytes();
    assert!(
        !n.is_empty() && n.len() <= MAX_NAME,
        "provider name: 1 to 120 bytes"
    );
    let mut input = [0u8; 16 + 2 * MAX_NAME];
    let mut i = 0;
    while i < 16 {
        input[i] = NAMESPACE[i];
        i += 1;
    }
    let mut j = 0;
    while j < n.len() {
        assert!(n[j].is_ascii() && n[j] != 0, "provider name: ASCII only");
        input[16 + 2 * j] = 0;
        input[16 + 2 * j + 1] = n[j].to_ascii_uppercase();
        j += 1;
    }
    let h = sha1(&input, 16 + 2 * n.len());
    Guid {
        data1: u32::from_le_bytes([h[0], h[1], h[2], h[3]]),
        data2: u16::from_le_bytes([h[4], h[5]]),
        data3: u16::from_le_bytes([h[6], (h[7] & 0x0F) | 0x50]),
        data4: [h[8], h[9], h[10], h[11], h[12], h[13], h[14], h[15]],
    }
}

/// SHA-1 (FIPS 180-4) of `data[..len]`, in a `const fn`.
#[allow(clippy::many_single_char_names)] // FIPS 180-4's names: h, w, a..e, f, k, t
const fn sha1(data: &[u8], len: usize) -> [u8; 20] {
    let mut h: [u32; 5] = [
        0x6745_2301,
        0xEFCD_AB89,
        0x98BA_DCFE,
        0x1032_5476,
        0xC3D2_E1F0,
    ];
    // Message + 0x80 + zeros + 64-bit length, in 64-byte blocks.
    let blocks = (len + 8) / 64 + 1;
    let mut block = 0;
    while block < blocks {
        let mut w = [0u32; 80];
        let mut t = 0;
        while t < 16 {
            let mut word = 0u32;
            let mut k = 0;
            while k < 4 {
                let at = block * 64 + t * 4 + k;
                let byte = if at < len {
                    data[at]
                } else if at == len {
                    0x80
                } else if at >= blocks * 64 - 8 {
                    let bits = (len as u64) * 8;
                    (bits >> (8 * (blocks * 64 - 1 - at))).to_le_bytes()[0]
                } else {
                    0
                };
                word = (word << 8) | byte as u32;
                k += 1;
            }
            w[t] = word;
            t += 1;
        }
        while t < 80 {
            w[t] = (w[t - 3] ^ w[t - 8] ^ w[t - 14] ^ w[t - 16]).rotate_left(1);
            t += 1;
        }
        let (mut a, mut b, mut c, mut d, mut e) = (h[0], h[1], h[2], h[3], h[4]);
        t = 0;
        while t < 80 {
            let (f, k) = match t / 20 {
                0 => ((b & c) | (!b & d), 0x5A82_7999),
                1 => (b ^ c ^ d, 0x6ED9_EBA1),
                2 => ((b & c) | (b & d) | (c & d), 0x8F1B_BCDC),
                _ => (b ^ c ^ d, 0xCA62_C1D6),
            };
            let temp = a
                .rotate_left(5)
                .wrapping_add(f)
                .wrapping_add(e)
                .wrapping_add(k)
                .wrapping_add(w[t]);
            e = d;
            d = c;
            c = b.rotate_left(30);
            b = a;
            a = temp;
            t += 1;
        }
        h[0] = h[0].wrapping_add(a);
        h[1] = h[1].wrapping_add(b);
        h[2] = h[2].wrapping_add(c);
        h[3] = h[3].wrapping_add(d);
        h[4] = h[4].wrapping_add(e);
        block += 1;
    }
    let mut out = [0u8; 20];
    let mut i = 0;
    while i < 5 {
        let b = h[i].to_be_bytes();
        out[4 * i] = b[0];
        out[4 * i + 1] = b[1];
        out[4 * i + 2] = b[2];
        out[4 * i + 3] = b[3];
        i += 1;
    }
    out
}

/// The provider metadata blob (the provider "traits"): `UINT16` total size, the name, a NUL.
/// `N` must be `name.len() + 3`.
///
/// # Panics
/// At compile time, if `N` is not `name.len() + 3`.
#[must_use]
pub const fn provider_metadata<const N: usize>(name: &str) -> [u8; N] {
    let n = name.as_bytes();
    assert!(N == n.len() + 3, "provider metadata: N = name length + 3");
    assert!(N <= MAX_NAME + 3, "provider name: 1 to 120 bytes");
    let mut out = [0u8; N];
    #[allow(clippy::cast_possible_truncation)] // N <= MAX_NAME + 3, checked above
    let size = (N as u16).to_le_bytes();
    out[0] = size[0];
    out[1] = size[1];
    let mut i = 0;
    while i < n.len() {
        out[2 + i] = n[i];
        i += 1;
    }
    out
}

/// `TlgInANSISTRING`: a NUL-terminated 8-bit string.
pub const IN_ANSISTRING: u8 = 2;
/// The flag on an in-type saying an out-type byte follows.
pub const CHAIN: u8 = 0x80;
/// `TlgOutUTF8`: the 8-bit string is UTF-8.
pub const OUT_UTF8: u8 = 35;

/// The metadata of the one event the drivers write: `UINT16` size, no tags (one zero byte), the
/// name `Log`, one field `Message` of in-type ANSI string with out-type UTF-8.
pub const LOG_EVENT_METADATA: [u8; 17] = {
    let mut m = [0u8; 17];
    m[0] = 17;
    // m[1] = 0, m[2] = 0: the size's high byte, then "no tags".
    let body = b"Log\0Message\0";
    let mut i = 0;
    while i < body.len() {
        m[3 + i] = body[i];
        i += 1;
    }
    m[15] = IN_ANSISTRING | CHAIN;
    m[16] = OUT_UTF8;
    m
};

/// `WINEVENT_CHANNEL_TRACELOGGING`: the channel TraceLogging events carry, so that decoders look
/// for the self-describing metadata.
pub const CHANNEL_TRACELOGGING: u8 = 11;

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        use std::fmt::Write;
        bytes.iter().fold(String::new(), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
    }

    fn text(g: Guid) -> String {
        format!(
            "{:08x}-{:04x}-{:04x}-{:02x}{:02x}-{}",
            g.data1,
            g.data2,
            g.data3,
            g.data4[0],
            g.data4[1],
            hex(&g.data4[2..])
        )
    }

    #[test]
    fn sha1_known_answers() {
        assert_eq!(
            hex(&sha1(b"", 0)),
            "da39a3ee5e6b4b0d3255bfef95601890afd80709"
        );
        assert_eq!(
            hex(&sha1(b"abc", 3)),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
        let two_blocks = b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
        assert_eq!(
            hex(&sha1(two_blocks, two_blocks.len())),
            "84983e441c3bd26ebaae4aa1f95129e5e54670f1"
        );
    }

    /// Published name/GUID pairs: Microsoft's TraceLogging example provider and two providers whose
    /// sources state the GUID TraceLogging derived from their names (docs/notes/etw-log.md §2).
    #[test]
    fn provider_guids_match_published_pairs() {
        assert_eq!(
            text(guid_from_name("MyCompany.MyComponent")),
            "ce5fa4ea-ab00-5402-8b76-9f76ac858fb5"
        );
        assert_eq!(
            text(guid_from_name("billti-example")),
            "c212d3ce-dfb9-5469-08f5-f477b0d92305"
        );
        assert_eq!(
            text(guid_from_name("billti-lean")),
            "27ba81ef-27c8-50b0-d951-267383db4862"
        );
        // Case-insensitive, as documented.
        assert_eq!(
            guid_from_name("mycompany.mycomponent"),
            guid_from_name("MyCompany.MyComponent")
        );
    }

    #[test]
    fn provider_metadata_is_size_name_nul() {
        let m: [u8; 6] = provider_metadata("abc");
        assert_eq!(m, [6, 0, b'a', b'b', b'c', 0]);
    }

    #[test]
    fn event_metadata_layout() {
        let m = LOG_EVENT_METADATA;
        assert_eq!(usize::from(u16::from_le_bytes([m[0], m[1]])), m.len());
        assert_eq!(m[2], 0, "no tags");
        assert_eq!(&m[3..15], b"Log\0Message\0");
        assert_eq!(m[15], 0x82);
        assert_eq!(m[16], 35);
    }
}
