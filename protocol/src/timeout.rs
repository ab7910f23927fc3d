//! A duration as callers write it: a number of seconds (fractions allowed: `2`, `0.5`) or a
//! humantime string (`"90s"`, `"5m"`, `"1h 30m"`, `"250ms"`). A bare number always means
//! seconds — in JSON and on the command line — because that is what an MCP client (and the
//! model writing the call) means by `"timeout": 2`.

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A positive duration parsed from `"90s"`-style text or a number of seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeout(pub Duration);

impl Timeout {
    /// Parses humantime text or a bare number of seconds (`"90"`, `"2.5"`).
    pub fn parse(text: &str) -> Result<Timeout, String> {
        let t = text.trim();
        let numeric = !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit() || b == b'.');
        if numeric {
            let secs: f64 = t.parse().map_err(|_| {
                format!("invalid duration {text:?} (write e.g. 90, 0.5, \"90s\" or \"5m\")")
            })?;
            return Timeout::from_secs_f64(secs);
        }
        let d = humantime::parse_duration(t).map_err(|e| {
            format!("invalid duration {text:?}: {e} (write e.g. 90, 0.5, \"90s\" or \"5m\")")
        })?;
        Timeout::positive(d)
    }

    /// A duration of `secs` seconds; it must be positive and finite.
    pub fn from_secs_f64(secs: f64) -> Result<Timeout, String> {
        if !secs.is_finite() || secs < 0.0 {
            return Err(format!(
                "a duration must be a positive number of seconds, not {secs}"
            ));
        }
        // Far beyond any sensible deadline, and safely inside Duration's range.
        if secs > 1.0e9 {
            return Err(format!("a duration of {secs} seconds is too long"));
        }
        Timeout::positive(Duration::from_secs_f64(secs))
    }

    fn positive(d: Duration) -> Result<Timeout, String> {
        if d.is_zero() {
            Err("a duration must be greater than zero".to_owned())
        } else {
            Ok(Timeout(d))
        }
    }
}

impl fmt::Display for Timeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

impl Serialize for Timeout {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Timeout {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Timeout;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number of seconds or a duration such as \"90s\"")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Timeout, E> {
                Timeout::from_secs_f64(v as f64).map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Timeout, E> {
                Timeout::from_secs_f64(v as f64).map_err(E::custom)
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Timeout, E> {
                Timeout::from_secs_f64(v).map_err(E::custom)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Timeout, E> {
                Timeout::parse(v).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

impl JsonSchema for Timeout {
    fn schema_name() -> Cow<'static, str> {
        "Timeout".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A number of seconds (fractions allowed, e.g. 90 or 0.5) or a duration string such as \"90s\", \"5m\" or \"1h 30m\".",
            "oneOf": [
                { "type": "number", "exclusiveMinimum": 0 },
                { "type": "string", "examples": ["90s", "5m", "250ms"] }
            ]
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_humantime_text_and_bare_seconds() {
        let cases: &[(&str, Option<Duration>)] = &[
            ("90s", Some(Duration::from_secs(90))),
            ("5m", Some(Duration::from_secs(300))),
            ("1h 30m", Some(Duration::from_secs(5400))),
            ("250ms", Some(Duration::from_millis(250))),
            ("90", Some(Duration::from_secs(90))),
            ("2.5", Some(Duration::from_millis(2500))),
            ("0", None),
            ("1.2.3", None),
            ("0s", None),
            ("soon", None),
            ("", None),
        ];
        for (text, want) in cases {
            assert_eq!(
                Timeout::parse(text).ok().map(|t| t.0),
                *want,
                "parsing {text:?}"
            );
        }
    }

    #[test]
    fn deserializes_from_string_or_number() {
        let t: Timeout = serde_json::from_str("\"2m\"").expect("string");
        assert_eq!(t.0, Duration::from_secs(120));
        let t: Timeout = serde_json::from_str("2").expect("integer");
        assert_eq!(t.0, Duration::from_secs(2), "a bare number means seconds");
        let t: Timeout = serde_json::from_str("0.25").expect("fraction");
        assert_eq!(t.0, Duration::from_millis(250));
        assert!(serde_json::from_str::<Timeout>("-5").is_err());
        assert!(serde_json::from_str::<Timeout>("0").is_err());
        assert!(serde_json::from_str::<Timeout>("1e300").is_err());
        assert!(serde_json::from_str::<Timeout>("true").is_err());
    }
}
