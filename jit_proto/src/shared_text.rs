//! Serde for [`jit_core::types::Text`] (a shared string; jit_core stays free of serde): a
//! field written `#[serde(with = "crate::shared_text")]` reads and writes a plain JSON string,
//! the same as a `String` field.

use jit_core::types::Text;
use serde::{Deserialize, Deserializer, Serializer};

/// Writes the string.
///
/// # Errors
/// The serializer's.
pub fn serialize<S: Serializer>(t: &Text, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(t)
}

/// Reads a string.
///
/// # Errors
/// Anything but a string.
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Text, D::Error> {
    String::deserialize(d).map(Text::from)
}
