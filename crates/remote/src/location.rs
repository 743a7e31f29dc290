//! Where a store lives: `s3://BUCKET/PREFIX`.

use crate::RemoteError;
use ferrite_pagestore::check_key;
use std::fmt;

/// A bucket and the key prefix below which a store keeps its objects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Location {
    /// The bucket name.
    pub bucket: String,
    /// The key prefix without leading or trailing `/`; empty for the bucket's
    /// root. Object `K` of the store is the bucket's key `PREFIX/K`.
    pub prefix: String,
}

impl S3Location {
    /// Parses `s3://BUCKET` or `s3://BUCKET/PREFIX` (a trailing `/` is
    /// ignored). The prefix is made of the same safe components as keys.
    ///
    /// # Errors
    /// [`RemoteError::InvalidUrl`] for another scheme, an empty bucket, or a
    /// prefix with empty, `.`/`..` or unsafe components.
    pub fn parse(url: &str) -> Result<Self, RemoteError> {
        let invalid = |why: &str| RemoteError::InvalidUrl {
            url: url.to_string(),
            why: why.to_string(),
        };
        let rest = url
            .strip_prefix("s3://")
            .ok_or_else(|| invalid("it does not start with s3://"))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let prefix = prefix.strip_suffix('/').unwrap_or(prefix);
        if bucket.is_empty() {
            return Err(invalid("the bucket name is empty"));
        }
        let bucket_ok = bucket
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b".-".contains(&b));
        if !bucket_ok {
            return Err(invalid(
                "a bucket name has lower-case letters, digits, '.' and '-'",
            ));
        }
        if !prefix.is_empty() && check_key(prefix).is_err() {
            return Err(invalid(
                "the prefix must be '/'-separated names of [A-Za-z0-9._-], none empty, '.' or '..'",
            ));
        }
        Ok(Self {
            bucket: bucket.to_string(),
            prefix: prefix.to_string(),
        })
    }
}

impl fmt::Display for S3Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::S3Location;

    #[test]
    fn urls_name_a_bucket_and_a_prefix() {
        let parse = |url| S3Location::parse(url).map(|l| (l.bucket, l.prefix));
        assert_eq!(parse("s3://b").unwrap(), ("b".into(), String::new()));
        assert_eq!(parse("s3://b/").unwrap(), ("b".into(), String::new()));
        assert_eq!(parse("s3://b/x/y").unwrap(), ("b".into(), "x/y".into()));
        assert_eq!(parse("s3://b/x/y/").unwrap(), ("b".into(), "x/y".into()));
        for bad in [
            "b/x",
            "http://b/x",
            "s3://",
            "s3:///x",
            "s3://b/x//y",
            "s3://b/../x",
        ] {
            assert!(S3Location::parse(bad).is_err(), "{bad:?} must be refused");
        }
    }
}
