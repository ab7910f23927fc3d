//! JSON text exactly as Python's `json.dumps(obj)` writes it (default separators `", "` and
//! `": "`, `ensure_ascii=True`), so token estimates and streamed tool input match the
//! reference Python mock byte for byte (up to object key order, which `serde_json` decides).

use serde_json::Value;

/// Python-style JSON text of `v` (always pure ASCII).
pub(crate) fn dumps(v: &Value) -> String {
    let mut out = String::new();
    write_value(v, &mut out);
    out
}

/// `approx_tokens` of the reference mock: `None` → 0, a string → its length in characters,
/// anything else → the length of its Python JSON text; then `max(1, (len + 3) / 4)`.
pub(crate) fn approx_tokens(v: Option<&Value>) -> u64 {
    let len = match v {
        None | Some(Value::Null) => return 0,
        Some(Value::String(s)) => s.chars().count(),
        Some(other) => dumps(other).len(),
    };
    (len as u64).div_ceil(4).max(1)
}

fn write_value(v: &Value, out: &mut String) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(n) => {
            if n.is_f64() {
                out.push_str(&python_float_repr(&n.to_string()));
            } else {
                out.push_str(&n.to_string());
            }
        }
        Value::String(s) => write_str(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_value(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            out.push('{');
            for (i, (k, item)) in map.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_str(k, out);
                out.push_str(": ");
                write_value(item, out);
            }
            out.push('}');
        }
    }
}

/// A JSON string literal with Python's `ensure_ascii` escaping: `"` `\` and the five short
/// escapes, every other char outside `' '..='~'` as `\uXXXX` (lowercase hex, surrogate pairs).
fn write_str(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            ' '..='~' => out.push(c),
            _ => {
                let mut units = [0u16; 2];
                for u in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{u:04x}"));
                }
            }
        }
    }
    out.push('"');
}

/// Python's `repr(float)` from the shortest round-trip digits `serde_json` printed
/// (`1e16` → `1e+16`, `1e-5` → `1e-05`, `100.0` stays).
fn python_float_repr(shortest: &str) -> String {
    let (neg, body) = match shortest.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, shortest),
    };
    let (mantissa, exp) = match body.split_once(['e', 'E']) {
        Some((m, e)) => (m, e.parse::<i64>().unwrap_or(0)),
        None => (body, 0),
    };
    let (int_part, frac_part) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let all: String = format!("{int_part}{frac_part}");
    let lead = all.len() - all.trim_start_matches('0').len();
    let digits = all.trim_start_matches('0').trim_end_matches('0');
    if digits.is_empty() {
        return if neg { "-0.0".into() } else { "0.0".into() };
    }
    // value = 0.<digits> * 10^decpt
    let decpt = int_part.len() as i64 - lead as i64 + exp;
    let mut s = String::new();
    if neg {
        s.push('-');
    }
    if decpt <= -4 || decpt > 16 {
        s.push_str(&digits[..1]);
        if digits.len() > 1 {
            s.push('.');
            s.push_str(&digits[1..]);
        }
        let e = decpt - 1;
        s.push_str(&format!("e{}{:02}", if e < 0 { '-' } else { '+' }, e.abs()));
    } else if decpt <= 0 {
        s.push_str("0.");
        s.push_str(&"0".repeat((-decpt) as usize));
        s.push_str(digits);
    } else if decpt as usize >= digits.len() {
        s.push_str(digits);
        s.push_str(&"0".repeat(decpt as usize - digits.len()));
        s.push_str(".0");
    } else {
        s.push_str(&digits[..decpt as usize]);
        s.push('.');
        s.push_str(&digits[decpt as usize..]);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn matches_python_dumps() {
        let v = json!({"b": [1, 2.5, null, true], "a": "x\"\n\u{e9}\u{1F600}\u{7f}"});
        assert_eq!(
            dumps(&v),
            r#"{"a": "x\"\n\u00e9\ud83d\ude00\u007f", "b": [1, 2.5, null, true]}"#
        );
        assert_eq!(dumps(&json!([])), "[]");
        assert_eq!(dumps(&json!({})), "{}");
    }

    #[test]
    fn floats_like_python_repr() {
        let cases = [
            (1e16, "1e+16"),
            (1e15, "1000000000000000.0"),
            (1e-5, "1e-05"),
            (0.0001, "0.0001"),
            (100.0, "100.0"),
            (-2.5, "-2.5"),
            (0.0, "0.0"),
            (1.5e300, "1.5e+300"),
            (123.456, "123.456"),
        ];
        for (f, want) in cases {
            assert_eq!(dumps(&json!(f)), want, "{f}");
        }
    }

    #[test]
    fn approx_tokens_like_python() {
        assert_eq!(approx_tokens(None), 0);
        assert_eq!(approx_tokens(Some(&json!(""))), 1);
        assert_eq!(approx_tokens(Some(&json!("abcdefgh"))), 2);
        assert_eq!(approx_tokens(Some(&json!([]))), 1);
        // json.dumps([{"role": "user", "content": "hi"}]) is 36 chars
        assert_eq!(
            approx_tokens(Some(&json!([{"role": "user", "content": "hi"}]))),
            9
        );
    }
}
