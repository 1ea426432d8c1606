//! Checked hex digests for the baked plan.
//!
//! A [`Sha256`] or [`Md5`] exists only as lower-case hex of the right
//! length, so a plan that holds one was baked from real bytes: the empty
//! "not baked yet" values older plans used cannot be built or read back.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A string that is not a digest of the expected kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{key}` = {found:?} is not {len} lower-case hex digits{hint}",
    hint = if found.is_empty() {
        ": an empty digest means the plan was resolved but never baked; bake the bundle with `vgpu-bake bake`"
    } else {
        ""
    }
)]
pub struct DigestError {
    /// The key the digest is stored under (`sha256` or `md5`).
    pub key: &'static str,
    /// Number of hex digits expected.
    pub len: usize,
    /// The text found.
    pub found: String,
}

macro_rules! hex_digest {
    ($(#[$doc:meta])* $name:ident, $key:literal, $len:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(String);

        impl $name {
            /// Number of hex digits.
            pub const LEN: usize = $len;

            /// Accepts exactly the lower-case hex form.
            pub fn parse(text: &str) -> Result<Self, DigestError> {
                if text.len() == $len
                    && text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
                {
                    Ok(Self(text.to_owned()))
                } else {
                    Err(DigestError {
                        key: $key,
                        len: $len,
                        found: text.to_owned(),
                    })
                }
            }

            /// Accepts either case and stores lower case (for user input).
            pub fn parse_any_case(text: &str) -> Result<Self, DigestError> {
                Self::parse(&text.to_ascii_lowercase()).map_err(|mut e| {
                    e.found = text.to_owned();
                    e
                })
            }

            /// The hex text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl std::ops::Deref for $name {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }

        impl PartialEq<String> for $name {
            fn eq(&self, other: &String) -> bool {
                self.0 == *other
            }
        }

        impl PartialEq<$name> for String {
            fn eq(&self, other: &$name) -> bool {
                *self == other.0
            }
        }

        impl std::str::FromStr for $name {
            type Err = DigestError;
            fn from_str(s: &str) -> Result<Self, DigestError> {
                Self::parse(s)
            }
        }

        impl TryFrom<String> for $name {
            type Error = DigestError;
            fn try_from(s: String) -> Result<Self, DigestError> {
                Self::parse(&s)
            }
        }

        impl From<$name> for String {
            fn from(d: $name) -> String {
                d.0
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = String::deserialize(d)?;
                Self::parse(&text).map_err(serde::de::Error::custom)
            }
        }
    };
}

hex_digest!(
    /// A SHA-256: 64 lower-case hex digits.
    Sha256,
    "sha256",
    64
);

hex_digest!(
    /// An MD5: 32 lower-case hex digits.
    Md5,
    "md5",
    32
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_lower_case_hex_of_the_right_length() {
        let good = "ab".repeat(32);
        assert_eq!(Sha256::parse(&good).unwrap(), good.as_str());
        assert!(Sha256::parse(&"AB".repeat(32)).is_err());
        assert!(Sha256::parse(&"ab".repeat(16)).is_err());
        assert!(Sha256::parse(&"zz".repeat(32)).is_err());
        assert_eq!(
            Sha256::parse_any_case(&"AB".repeat(32)).unwrap(),
            good.as_str()
        );
        assert!(Md5::parse(&"0f".repeat(16)).is_ok());
        assert!(Md5::parse(&"0f".repeat(32)).is_err());
    }

    #[test]
    fn empty_digest_says_it_was_never_baked() {
        let e = Sha256::parse("").unwrap_err().to_string();
        assert_eq!(
            e,
            "`sha256` = \"\" is not 64 lower-case hex digits: an empty digest means the plan was resolved but never baked; bake the bundle with `vgpu-bake bake`"
        );
        let e = Md5::parse("xyz").unwrap_err().to_string();
        assert_eq!(e, "`md5` = \"xyz\" is not 32 lower-case hex digits");
    }
}
