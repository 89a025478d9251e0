//! Short object ids with a type letter: `B1` blueprints, `R1` resources, `L1` leases.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

/// An object id: a kind and a number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ObjectId {
    /// `B<n>`
    Blueprint(i64),
    /// `R<n>`
    Resource(i64),
    /// `L<n>`
    Lease(i64),
}

impl ObjectId {
    /// The numeric part, as stored in the object's own table.
    pub fn number(self) -> i64 {
        match self {
            ObjectId::Blueprint(n) | ObjectId::Resource(n) | ObjectId::Lease(n) => n,
        }
    }

    /// The kind, as a word for messages.
    pub fn kind(self) -> &'static str {
        match self {
            ObjectId::Blueprint(_) => "blueprint",
            ObjectId::Resource(_) => "resource",
            ObjectId::Lease(_) => "lease",
        }
    }
}

impl fmt::Display for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let letter = match self {
            ObjectId::Blueprint(_) => 'B',
            ObjectId::Resource(_) => 'R',
            ObjectId::Lease(_) => 'L',
        };
        write!(f, "{letter}{}", self.number())
    }
}

impl Serialize for ObjectId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ObjectId {
    /// From its text, `L12`: as the API sends it.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = std::borrow::Cow::<str>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A string that is not an object id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an object id: use B<n>, R<n> or L<n>, such as L12")]
pub struct ParseIdError(pub String);

impl FromStr for ObjectId {
    type Err = ParseIdError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let error = || ParseIdError(text.to_string());
        let mut chars = text.chars();
        let letter = chars.next().ok_or_else(error)?.to_ascii_uppercase();
        let digits = chars.as_str();
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(error());
        }
        let number: i64 = digits.parse().map_err(|_| error())?;
        match letter {
            'B' => Ok(ObjectId::Blueprint(number)),
            'R' => Ok(ObjectId::Resource(number)),
            'L' => Ok(ObjectId::Lease(number)),
            _ => Err(error()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip() {
        for text in ["B1", "R7", "L12345"] {
            assert_eq!(text.parse::<ObjectId>().unwrap().to_string(), text);
        }
        assert_eq!("l3".parse::<ObjectId>().unwrap(), ObjectId::Lease(3));
    }

    #[test]
    fn bad_ids_are_named() {
        for text in ["", "L", "X1", "L-1", "L1x", "12", "L99999999999999999999"] {
            let error = text.parse::<ObjectId>().unwrap_err();
            assert!(error.to_string().contains("is not an object id"), "{error}");
        }
    }
}
