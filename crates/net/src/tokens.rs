//! The tokens file: which tenants exist and the SHA-256 of each one's token.
//!
//! ```text
//! # tenant   sha256(token), 64 hex digits
//! t1         9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
//! ```

use sha2::{Digest, Sha256};
use std::{collections::BTreeMap, path::Path};

/// The tenants a server admits.
#[derive(Clone, Default)]
pub struct TokenTable {
    digests: BTreeMap<String, [u8; 32]>,
}

impl std::fmt::Debug for TokenTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Digests are not secrets, but logs have no use for them.
        f.debug_struct("TokenTable")
            .field("tenants", &self.digests.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Whether a tenant and token are admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Admitted,
    UnknownTenant,
    WrongToken,
}

impl TokenTable {
    /// Reads a tokens file.
    ///
    /// # Errors
    /// An unreadable file, or the first malformed line with its number.
    pub fn from_file(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read tokens file {}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| format!("tokens file {}: {e}", path.display()))
    }

    /// Parses the text of a tokens file: `TENANT HEX-SHA256` per line,
    /// `#` comments, blank lines.
    ///
    /// # Errors
    /// The first malformed line, with its number.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut digests = BTreeMap::new();
        for (index, line) in text.lines().enumerate() {
            let number = index + 1;
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [tenant, hex] = fields[..] else {
                return Err(format!(
                    "line {number}: expected `TENANT HEX-SHA256-OF-TOKEN`, found {} fields",
                    fields.len()
                ));
            };
            if !crate::wire::is_tenant_name(tenant) {
                return Err(format!(
                    "line {number}: tenant name {tenant:?} is not 1 to 64 of [A-Za-z0-9._-] \
                     (and not . or ..)"
                ));
            }
            let digest = parse_digest(hex).ok_or_else(|| {
                format!("line {number}: {hex:?} is not a SHA-256 digest (64 hex digits)")
            })?;
            if digests.insert(tenant.to_string(), digest).is_some() {
                return Err(format!("line {number}: tenant {tenant} is listed twice"));
            }
        }
        Ok(Self { digests })
    }

    /// Adds a tenant whose token is `token` (for tests and embedders).
    pub fn insert(&mut self, tenant: &str, token: &str) {
        self.digests.insert(tenant.to_string(), digest_of(token));
    }

    pub fn len(&self) -> usize {
        self.digests.len()
    }

    pub fn is_empty(&self) -> bool {
        self.digests.is_empty()
    }

    /// Checks `token` for `tenant`, comparing digests in constant time.
    pub fn admit(&self, tenant: &str, token: &str) -> Admission {
        let given = digest_of(token);
        match self.digests.get(tenant) {
            None => Admission::UnknownTenant,
            Some(expected) if constant_time_eq(expected, &given) => Admission::Admitted,
            Some(_) => Admission::WrongToken,
        }
    }
}

/// SHA-256 of a token.
pub fn digest_of(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// The digest as a tokens file line has it.
pub fn digest_hex(token: &str) -> String {
    use std::fmt::Write;
    digest_of(token)
        .iter()
        .fold(String::with_capacity(64), |mut out, b| {
            let _ = write!(out, "{b:02x}");
            out
        })
}

fn parse_digest(hex: &str) -> Option<[u8; 32]> {
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// Equality whose time does not depend on where the digests differ.
fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    // Keep the optimizer from turning the fold into an early exit.
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_file_lines_are_checked_with_their_numbers() {
        let good = format!(
            "# tenants\n\n t1 {}  # first\nt2 {}\n",
            digest_hex("secret"),
            digest_hex("other")
        );
        let table = TokenTable::parse(&good).expect("parses");
        assert_eq!(table.len(), 2);
        assert_eq!(table.admit("t1", "secret"), Admission::Admitted);
        assert_eq!(table.admit("t1", "other"), Admission::WrongToken);
        assert_eq!(table.admit("t3", "secret"), Admission::UnknownTenant);
        let cases = [
            ("t1\n", "line 1"),
            ("# c\nt1 abc\n", "line 2"),
            (
                "\n\n../x 0000000000000000000000000000000000000000000000000000000000000000",
                "line 3",
            ),
            ("t1 00 extra\n", "line 1"),
        ];
        for (text, line) in cases {
            let error = TokenTable::parse(text).expect_err(text);
            assert!(error.starts_with(line), "{text:?}: {error}");
        }
        let twice = format!("a {}\na {}\n", digest_hex("x"), digest_hex("y"));
        assert!(TokenTable::parse(&twice)
            .expect_err("twice")
            .contains("twice"));
    }
}
