//! Prompt directive parsing. Each function mirrors one regular expression of
//! `fake_claude.py` (`re.search` semantics: the first occurrence that matches wins).

/// Byte offsets just past every `NAME:` in `text`.
fn after_colon<'a>(text: &'a str, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    text.match_indices(name)
        .filter_map(move |(i, _)| text[i + name.len()..].strip_prefix(':'))
}

fn skip_ws(s: &str) -> &str {
    s.trim_start_matches(char::is_whitespace)
}

/// Leading ASCII digits of `s` (possibly empty) and the rest.
fn digits(s: &str) -> (&str, &str) {
    let n = s.bytes().take_while(u8::is_ascii_digit).count();
    s.split_at(n)
}

/// `NAME:\s*([0-9]+(?:\.[0-9]+)?)` as a number.
pub fn number(text: &str, name: &str) -> Option<f64> {
    after_colon(text, name).find_map(|rest| {
        let rest = skip_ws(rest);
        let (int, tail) = digits(rest);
        if int.is_empty() {
            return None;
        }
        let len = match tail.strip_prefix('.').map(digits) {
            Some((frac, _)) if !frac.is_empty() => int.len() + 1 + frac.len(),
            _ => int.len(),
        };
        rest[..len].parse().ok()
    })
}

/// `NAME:([^\n]*)`, stripped: the rest of the line after the first `NAME:`.
pub fn line(text: &str, name: &str) -> Option<String> {
    after_colon(text, name)
        .next()
        .map(|rest| rest.split('\n').next().unwrap_or("").trim().to_string())
}

/// Whether the bare word `name` occurs anywhere in the prompt.
pub fn flag(text: &str, name: &str) -> bool {
    text.contains(name)
}

fn parse_u64(s: &str) -> u64 {
    s.parse().unwrap_or(u64::MAX) // only digits here: failure means overflow
}

/// `MOCK_USAGE:\s*([0-9][0-9,]*)`: up to four comma-separated token counts, zero-padded.
pub fn usage(text: &str) -> Option<[u64; 4]> {
    after_colon(text, "MOCK_USAGE").find_map(|rest| {
        let rest = skip_ws(rest);
        if !rest.starts_with(|c: char| c.is_ascii_digit()) {
            return None;
        }
        let n = rest
            .bytes()
            .take_while(|b| b.is_ascii_digit() || *b == b',')
            .count();
        let mut u = [0u64; 4];
        for (slot, v) in u
            .iter_mut()
            .zip(rest[..n].split(',').filter(|x| !x.is_empty()))
        {
            *slot = parse_u64(v);
        }
        Some(u)
    })
}

/// `MOCK_FAIL_FIRST:\s*([0-9]+):([A-Za-z0-9_.-]+)` as (n, key).
pub fn fail_first(text: &str) -> Option<(u64, String)> {
    first_n(text, "MOCK_FAIL_FIRST")
}

/// `MOCK_LIMITED_FIRST:<n>:<key>` as (n, key): the first `n` turns are rate limited (429).
pub fn limited_first(text: &str) -> Option<(u64, String)> {
    first_n(text, "MOCK_LIMITED_FIRST")
}

fn first_n(text: &str, name: &str) -> Option<(u64, String)> {
    after_colon(text, name).find_map(|rest| {
        let (n, tail) = digits(skip_ws(rest));
        let tail = tail.strip_prefix(':').filter(|_| !n.is_empty())?;
        let k = tail
            .bytes()
            .take_while(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
            .count();
        (k > 0).then(|| (parse_u64(n), tail[..k].to_string()))
    })
}

/// `MOCK_STREAM:\s*<n>:<ms>` as (n, ms).
pub fn stream(text: &str) -> Option<(u64, u64)> {
    after_colon(text, "MOCK_STREAM").find_map(|rest| {
        let (n, tail) = digits(skip_ws(rest));
        let (ms, _) = digits(tail.strip_prefix(':').filter(|_| !n.is_empty())?);
        (!ms.is_empty()).then(|| (parse_u64(n), parse_u64(ms)))
    })
}

/// FNV-1a, 64 bit.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        assert_eq!(number("x MOCK_SLEEP: 1.5 y", "MOCK_SLEEP"), Some(1.5));
        assert_eq!(
            number("MOCK_SLEEP:x MOCK_SLEEP:2.", "MOCK_SLEEP"),
            Some(2.0)
        );
        assert_eq!(number("MOCK_CRASH_MID:3", "MOCK_CRASH"), None);
        assert_eq!(
            line("a MOCK_TEXT: hi there \nnext", "MOCK_TEXT").as_deref(),
            Some("hi there")
        );
        assert_eq!(usage("MOCK_USAGE:10,,20"), Some([10, 20, 0, 0]));
        assert_eq!(
            fail_first("MOCK_FAIL_FIRST:2:k.1 x"),
            Some((2, "k.1".into()))
        );
        assert_eq!(stream("MOCK_STREAM:3:50"), Some((3, 50)));
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
