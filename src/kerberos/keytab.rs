//! Reads which keys an MIT keytab file holds (principal, key version, enctype; never the key
//! bytes kept), for `check-config --online`: a keytab without a key for the SPN, or with only
//! RC4/DES keys, fails every Windows sign-in, and MIT krb5 only says so per request.
//!
//! Format (MIT `keytab.txt`): `0x05 0x02`, then entries, each a signed 32-bit big-endian length
//! (negative: a hole of that many bytes), components count (u16), realm and components as
//! u16-counted strings, name type (u32), timestamp (u32), 8-bit kvno, enctype (u16), key
//! (u16-counted), and optionally a 32-bit kvno that supersedes the 8-bit one.

use std::path::Path;

/// The most bytes read from a keytab (real ones hold a few keys of a few dozen bytes each).
const MAX_KEYTAB_BYTES: u64 = 1 << 20;

/// One key of a keytab, without the key itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeytabKey {
    /// `service/host@REALM`.
    pub principal: String,
    /// Key version number.
    pub kvno: u32,
    /// Encryption type number (RFC 3961 registry), e.g. 18 for aes256-cts-hmac-sha1-96.
    pub enctype: u16,
}

/// Why a keytab cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum KeytabError {
    /// The file cannot be opened or read.
    #[error("cannot read {path}: {message} — check the path and permissions")]
    Unreadable {
        /// The keytab.
        path: String,
        /// The OS error.
        message: String,
    },
    /// Not an MIT keytab (version 0x0502), or cut short.
    #[error(
        "{path} is not a version 2 keytab ({why}) — export it again with ktpass or kadmin ktadd"
    )]
    Malformed {
        /// The keytab.
        path: String,
        /// What was wrong.
        why: &'static str,
    },
}

/// The keys `path` holds.
pub fn keys(path: &Path) -> Result<Vec<KeytabKey>, KeytabError> {
    use std::io::Read as _;
    let unreadable = |e: std::io::Error| KeytabError::Unreadable {
        path: path.display().to_string(),
        message: e.to_string(),
    };
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .map_err(unreadable)?
        .take(MAX_KEYTAB_BYTES)
        .read_to_end(&mut bytes)
        .map_err(unreadable)?;
    parse(&bytes).map_err(|why| KeytabError::Malformed {
        path: path.display().to_string(),
        why,
    })
}

/// The keys of a keytab's bytes.
pub fn parse(bytes: &[u8]) -> Result<Vec<KeytabKey>, &'static str> {
    let mut reader = Reader(bytes);
    if reader.take(2)? != [5, 2] {
        return Err("the header is not 0x0502");
    }
    let mut keys = Vec::new();
    while !reader.0.is_empty() {
        let length = i32::from_be_bytes(reader.array()?);
        let size = usize::try_from(length.unsigned_abs()).map_err(|_| "entry too long")?;
        let entry = reader.take(size)?;
        if length > 0 {
            keys.push(parse_entry(entry)?);
        }
    }
    Ok(keys)
}

fn parse_entry(entry: &[u8]) -> Result<KeytabKey, &'static str> {
    let mut reader = Reader(entry);
    let components = u16::from_be_bytes(reader.array()?);
    let realm = reader.counted_text()?;
    let mut names = Vec::new();
    for _ in 0..components {
        names.push(reader.counted_text()?);
    }
    let _name_type = reader.take(4)?;
    let _timestamp = reader.take(4)?;
    let kvno8 = reader.take(1)?[0];
    let enctype = u16::from_be_bytes(reader.array()?);
    let key_length = usize::from(u16::from_be_bytes(reader.array()?));
    reader.take(key_length)?;
    let kvno = match reader.array::<4>() {
        Ok(raw) if u32::from_be_bytes(raw) != 0 => u32::from_be_bytes(raw),
        _ => u32::from(kvno8),
    };
    Ok(KeytabKey {
        principal: format!("{}@{realm}", names.join("/")),
        kvno,
        enctype,
    })
}

/// The name of an enctype number, for the report.
pub fn enctype_name(enctype: u16) -> String {
    let name = match enctype {
        1 => "des-cbc-crc",
        3 => "des-cbc-md5",
        17 => "aes128-cts-hmac-sha1-96",
        18 => "aes256-cts-hmac-sha1-96",
        19 => "aes128-cts-hmac-sha256-128",
        20 => "aes256-cts-hmac-sha384-192",
        23 => "rc4-hmac",
        other => return format!("enctype {other}"),
    };
    name.to_owned()
}

/// Whether `enctype` is one of the AES types Windows clients use by default.
pub fn is_aes(enctype: u16) -> bool {
    matches!(enctype, 17..=20)
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], &'static str> {
        if self.0.len() < n {
            return Err("cut short");
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], &'static str> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn counted_text(&mut self) -> Result<String, &'static str> {
        let length = usize::from(u16::from_be_bytes(self.array()?));
        let raw = self.take(length)?;
        String::from_utf8(raw.to_vec()).map_err(|_| "a name is not UTF-8")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(names: &[&str], realm: &str, enctype: u16, kvno: u32) -> Vec<u8> {
        let counted = |s: &str| {
            let mut out = (s.len() as u16).to_be_bytes().to_vec();
            out.extend_from_slice(s.as_bytes());
            out
        };
        let mut body = (names.len() as u16).to_be_bytes().to_vec();
        body.extend(counted(realm));
        for name in names {
            body.extend(counted(name));
        }
        body.extend(1u32.to_be_bytes());
        body.extend(0u32.to_be_bytes());
        body.push(kvno as u8);
        body.extend(enctype.to_be_bytes());
        body.extend(counted("0123456789abcdef"));
        body.extend(kvno.to_be_bytes());
        let mut out = (body.len() as i32).to_be_bytes().to_vec();
        out.extend(body);
        out
    }

    #[test]
    fn keys_are_listed_holes_skipped_and_garbage_refused() {
        let mut bytes = vec![5, 2];
        bytes.extend(entry(
            &["HTTP", "sts.contoso.test"],
            "CONTOSO.TEST",
            18,
            300,
        ));
        bytes.extend((-6i32).to_be_bytes());
        bytes.extend([0u8; 6]);
        bytes.extend(entry(&["HTTP", "sts.contoso.test"], "CONTOSO.TEST", 23, 2));
        let keys = parse(&bytes).unwrap();
        assert_eq!(
            keys,
            [
                KeytabKey {
                    principal: "HTTP/sts.contoso.test@CONTOSO.TEST".into(),
                    kvno: 300,
                    enctype: 18
                },
                KeytabKey {
                    principal: "HTTP/sts.contoso.test@CONTOSO.TEST".into(),
                    kvno: 2,
                    enctype: 23
                },
            ]
        );
        assert_eq!(parse(&[5, 1]), Err("the header is not 0x0502"));
        assert_eq!(parse(&bytes[..bytes.len() - 3]), Err("cut short"));
        assert_eq!(enctype_name(18), "aes256-cts-hmac-sha1-96");
        assert_eq!(enctype_name(99), "enctype 99");
    }
}
