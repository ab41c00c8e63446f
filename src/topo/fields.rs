//! Reading keys and labels, whose values a collector may write as strings or numbers.

use std::borrow::Cow;

use serde_json::Value;

use super::state::Entity;
use crate::record::Fields;

/// A field as text: a non-empty string, or a number written out.
pub fn text<'a>(f: &'a Fields, name: &str) -> Option<Cow<'a, str>> {
    match f.get(name)? {
        Value::String(s) if !s.is_empty() => Some(Cow::Borrowed(s)),
        Value::Number(n) => Some(Cow::Owned(n.to_string())),
        _ => None,
    }
}

/// A field as a non-negative integer, written as a number or as digits.
pub fn uint(f: &Fields, name: &str) -> Option<u64> {
    match f.get(name)? {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// From the keys, else from the labels.
pub fn get<'a>(e: &'a Entity, name: &str) -> Option<Cow<'a, str>> {
    text(&e.keys, name).or_else(|| text(&e.labels, name))
}

pub fn get_uint(e: &Entity, name: &str) -> Option<u64> {
    uint(&e.keys, name).or_else(|| uint(&e.labels, name))
}

/// True for addresses that never leave their machine.
pub fn is_loopback(ip: &str) -> bool {
    ip.starts_with("127.") || ip == "::1" || ip.starts_with("::ffff:127.")
}
