//! Reading attributes by key, as text or as typed values.

use crate::{Attribute, LeaseSnapshot, ResourceSnapshot};

/// Look-ups over a list of attributes.
pub trait Attributes {
    /// The value of `key`, if set.
    fn attribute(&self, key: &str) -> Option<&str>;

    /// The value of `key` parsed with [`std::str::FromStr`]; an error names the key and the value.
    fn parse_attribute<T>(&self, key: &str) -> Result<Option<T>, String>
    where
        T: std::str::FromStr,
        T::Err: std::fmt::Display,
    {
        self.attribute(key)
            .map(|value| {
                value
                    .parse()
                    .map_err(|e| format!("attribute `{key}` = {value:?}: {e}"))
            })
            .transpose()
    }
}

impl Attributes for [Attribute] {
    fn attribute(&self, key: &str) -> Option<&str> {
        self.iter().find(|a| a.key == key).map(|a| a.value.as_str())
    }
}

impl Attributes for ResourceSnapshot {
    fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes.attribute(key)
    }
}

impl Attributes for LeaseSnapshot {
    fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes.attribute(key)
    }
}

impl Attribute {
    /// An attribute from a key and a value.
    pub fn new(key: impl Into<String>, value: impl Into<String>) -> Self {
        Attribute {
            key: key.into(),
            value: value.into(),
        }
    }
}
