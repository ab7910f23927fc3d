//! A task deadline as callers write it: a humantime string (`"90s"`, `"5m"`, `"1h 30m"`) or
//! a whole number of milliseconds.

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A positive duration parsed from `"90s"`-style text or integer milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeout(pub Duration);

impl Timeout {
    /// Parses humantime text or a bare integer (milliseconds).
    pub fn parse(text: &str) -> Result<Timeout, String> {
        let t = text.trim();
        let d = if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
            let ms: u64 = t
                .parse()
                .map_err(|e| format!("invalid timeout {text:?}: {e}"))?;
            Duration::from_millis(ms)
        } else {
            humantime::parse_duration(t).map_err(|e| {
                format!(
                    "invalid timeout {text:?}: {e} (write e.g. \"90s\", \"5m\" or milliseconds)"
                )
            })?
        };
        Timeout::positive(d)
    }

    fn positive(d: Duration) -> Result<Timeout, String> {
        if d.is_zero() {
            Err("timeout must be greater than zero".to_owned())
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
                f.write_str("a duration such as \"90s\" or a number of milliseconds")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Timeout, E> {
                Timeout::positive(Duration::from_millis(v)).map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Timeout, E> {
                let ms = u64::try_from(v).map_err(|_| E::custom("timeout must not be negative"))?;
                self.visit_u64(ms)
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Timeout, E> {
                if !v.is_finite() || v < 0.0 {
                    return Err(E::custom(
                        "timeout must be a positive number of milliseconds",
                    ));
                }
                Timeout::positive(Duration::from_secs_f64(v / 1000.0)).map_err(E::custom)
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
            "description": "A duration such as \"90s\", \"5m\" or \"1h 30m\", or a whole number of milliseconds.",
            "oneOf": [
                { "type": "string", "examples": ["90s", "5m"] },
                { "type": "integer", "minimum": 1 }
            ]
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_humantime_text_and_milliseconds() {
        let cases: &[(&str, Option<Duration>)] = &[
            ("90s", Some(Duration::from_secs(90))),
            ("5m", Some(Duration::from_secs(300))),
            ("1h 30m", Some(Duration::from_secs(5400))),
            ("250ms", Some(Duration::from_millis(250))),
            ("1500", Some(Duration::from_millis(1500))),
            ("0", None),
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
        let t: Timeout = serde_json::from_str("1200").expect("number");
        assert_eq!(t.0, Duration::from_millis(1200));
        assert!(serde_json::from_str::<Timeout>("-5").is_err());
        assert!(serde_json::from_str::<Timeout>("true").is_err());
    }
}
